// Exchanges an API key for the dashboard's session cookie, then reloads the dashboard.
"use strict";

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = document.getElementById("key").value.trim();
  const response = await fetch("/dashboard/login", { method: "POST", headers: { "X-API-Key": key } });
  if (response.ok) {
    window.location.assign("/dashboard/");
  } else {
    document.getElementById("error").textContent = "That key was not accepted.";
  }
});
