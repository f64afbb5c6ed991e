"""The whole feedback loop of xentcore, end to end, with a real scikit-learn model.

A classifier goes to production behind ``xent serve``. We want it to act on its own only when
it is likely right, and to pass the rest to a person, with a *guarantee*: among the outputs it
accepts, the error rate is at most ``alpha`` (here 2%), with probability at least 1 - ``delta``
(here 90%). This script walks through the steps (README: "Feedback", "Flags with a guarantee"):

1. train a model on scikit-learn's bundled ``digits`` images (no download);
2. start ``xent serve`` on a free local port with a throw-away SQLite store (or use ``--url``);
3. score a calibration stream: some batches arrive with labels, the others without, and a
   random audit sample of those is labelled later, by id (``client.label``);
4. fit a risk-controlled policy on that stream (``client.put_policy``);
5. score production items with ``flag={"policy": ...}`` and compare the guarantee with the
   error actually made on the accepted items, which we can measure here because the true labels
   are known;
6. repeat steps 1 and 3-5 over fresh random splits, and count how often the realized error
   exceeded ``alpha`` (the guarantee allows a ``delta`` share of such failures).

Run from the repository root, after the README's install plus scikit-learn (the ``test`` extra
has it; ``pip install scikit-learn`` is enough)::

    python examples/risk_control_loop.py                     # about 10 s
    python examples/risk_control_loop.py --repeats 50 --alpha 0.03
    python examples/risk_control_loop.py --url http://127.0.0.1:8000   # a server you run

Each ``# %%`` section below is one notebook cell (VS Code and Jupytext run them as such); in
Jupyter, paste them in order and run ``main([])`` or ``main(["--repeats", "1"])``.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from service.client import Client
from service.schemas import LabelsResponse, PolicyResponse, PolicyUsed

try:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
except ImportError:  # scikit-learn is not a dependency of xentcore itself
    sys.exit("this example needs scikit-learn: pip install scikit-learn")

# %% 0. Settings ------------------------------------------------------------------------------
# The split of the 1,797 digits images: the model learns from N_TRAIN of them; N_CALIBRATION go
# through the calibration stream; the rest play production traffic. A small training set keeps
# the model good but not perfect (about 95% accurate), so there are errors worth controlling.
N_TRAIN = 400
N_CALIBRATION = 800
N_BATCHES = 8  # the calibration stream arrives in this many batches
POLICY = "gate"  # the policy's name in the stream


# %% 1. Data and model -------------------------------------------------------------------------
@dataclass
class Split:
    """One random split, with the model's predicted probabilities for the held-out parts."""

    proba_cal: np.ndarray  # N_CALIBRATION x 10 probabilities (predict_proba)
    y_cal: np.ndarray  # their true digits: known to us, revealed to xentcore only as labels
    proba_test: np.ndarray  # production items
    y_test: np.ndarray  # used only at the end, to measure the realized error
    accuracy_test: float  # the model's plain accuracy on the production items


def make_split(seed: int) -> Split:
    """Shuffle the digits, train a logistic regression, predict the held-out images."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    train, cal, test = np.split(order, [N_TRAIN, N_TRAIN + N_CALIBRATION])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x[train], y[train])
    # The classes are the digits 0-9 in order (model.classes_), so a label is also the index
    # of its column in predict_proba: exactly the "sparse" labels xentcore expects.
    proba_test = model.predict_proba(x[test])
    accuracy = float(np.mean(proba_test.argmax(axis=1) == y[test]))
    return Split(model.predict_proba(x[cal]), y[cal], proba_test, y[test], accuracy)


# %% 2. A server ----------------------------------------------------------------------------
# `xent serve` in a subprocess on a free port, with its SQLite store in a temporary directory
# that disappears afterwards. Against a server of your own, skip this cell and use its URL.
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_server() -> Iterator[str]:
    """Run ``xent serve`` (the same interpreter's ``service.cli``) until the block ends."""
    with tempfile.TemporaryDirectory(prefix="xent-example-") as data_dir:
        port = free_port()
        env = {**os.environ, "XENT_DATA_DIR": data_dir, "XENT_WORKERS": "1"}
        for name in ("XENT_DATABASE_URL", "XENT_API_KEYS"):  # this one is ours: SQLite, open
            env.pop(name, None)
        log_path = Path(data_dir) / "serve.log"
        with log_path.open("wb") as log:
            command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
            server = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--log-level", "warning"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, server, log_path)
            yield url
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def wait_healthy(url: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"xent serve exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    sys.exit(f"xent serve did not answer /healthz within 30 s:\n{log_path.read_text()}")


@contextmanager
def server_url(url: str | None) -> Iterator[str]:
    """``url`` when given, else the URL of a :func:`local_server` for the block's duration."""
    if url is not None:
        yield url.rstrip("/")
    else:
        with local_server() as local:
            yield local


# %% 3. The calibration stream and its feedback loop --------------------------------------------
# Everything is scored under one `stream` name, with `ids`: the service then keeps each item
# so that a label can be joined to it later. The calibration set a policy learns from is
#   - the items of batches that came with their labels (a labelled back-test, say), plus
#   - the items drawn by `audit_rate` whose label arrived later.
# Audited items are drawn at random, flagged or not, so they are an unbiased sample. Labels
# that reviewers give to flagged items are not: they are counted apart ("reviewed") and never
# enter a fit.
@dataclass
class Feedback:
    n_labelled_batch: int  # items labelled in their own batch
    n_audited: int  # items drawn for review in the unlabelled batches
    labels: LabelsResponse  # what the audited items' late labels matched
    n_reviewed: int  # flagged, not audited items that reviewers labelled anyway
    summary: dict[str, Any]  # the stream's `total` figures


def feed_calibration(
    client: Client, stream: str, split: Split, *, audit_rate: float, seed: int
) -> Feedback:
    ids = np.array([f"cal-{i:04d}" for i in range(len(split.y_cal))])
    truth = dict(zip(ids.tolist(), split.y_cal.tolist(), strict=True))
    batches = np.array_split(np.arange(len(ids)), N_BATCHES)
    n_labelled = n_audited = 0
    for b, rows in enumerate(batches):
        if b < N_BATCHES // 2:  # the first half arrives with labels
            client.score(split.proba_cal[rows], split.y_cal[rows], ids=ids[rows], stream=stream)
            n_labelled += len(rows)
        else:  # live traffic: no labels yet; a random share is drawn for review
            r = client.score(
                split.proba_cal[rows],
                ids=ids[rows],
                stream=stream,
                audit_rate=audit_rate,
                audit_seed=seed * 1000 + b,  # reproducible draws; omit for fresh ones
                per_item=False,
            )
            n_audited += r.audit.count if r.audit else 0

    # The review queue: audited items still waiting for a label. Reviewers label them...
    queue = kept_ids(client, stream, audit=True, labeled=False)
    labels = client.label(stream, queue, [truth[i] for i in queue])
    # ...and, as reviewers do, also look at some items flagged by the default rule
    # (min_confidence 0.5) that were not audited: a biased sample, kept apart.
    flagged = kept_ids(client, stream, audit=False, labeled=False, flagged=True)
    if flagged:
        client.label(stream, flagged, [truth[i] for i in flagged])
    total = client.summary(stream).total
    return Feedback(n_labelled, n_audited, labels, len(flagged), total)


def kept_ids(
    client: Client, stream: str, *, audit: bool, labeled: bool, flagged: bool | None = None
) -> list[str]:
    """The ids of every kept item matching the filters (None: either), page by page."""
    ids: list[str] = []
    cursor = None
    while True:
        page = client.items(
            stream, audit=audit, labeled=labeled, flagged=flagged, limit=1000, cursor=cursor
        )
        ids += [str(item.id) for item in page.items]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


# %% 4. A policy with a guarantee ---------------------------------------------------------------
# `put_policy` fits, on the stream's calibration set, the confidence threshold of largest
# coverage whose (1 - delta) upper bound on the accepted error rate is <= alpha (fixed-sequence
# testing from the strictest threshold down, exact Clopper-Pearson bounds), and stores it as the
# next version of the name. Infeasible (fewer than `min_calibration` items, or already the
# strictest threshold fails, say because the most confident items include an error): the
# policy flags everything, and says so with `feasible=False`.
def fit_policy(client: Client, stream: str, *, alpha: float, delta: float) -> PolicyResponse:
    return client.put_policy(stream, POLICY, alpha=alpha, delta=delta)


# %% 5. Production: flag with the policy, then measure ------------------------------------------
# Production batches name the policy in `flag`: an item whose confidence is below the threshold
# is flagged (reason `risk_policy`) and goes to a person; the rest are accepted. Here we know
# the true digits, so we can count the errors among the accepted items, which a real pipeline
# learns only later (through audits, as in step 3).
@dataclass
class Outcome:
    policy: PolicyResponse  # the policy as fitted
    used: PolicyUsed  # the policy block of the production response: the version applied
    n_test: int
    n_accepted: int  # production items the policy let through
    errors: int  # of those, how many were wrong (known here from the true labels)
    aurc: float | None  # area under the risk-coverage curve of the calibration set

    @property
    def coverage(self) -> float:
        return self.n_accepted / self.n_test

    @property
    def realized_error(self) -> float | None:
        return self.errors / self.n_accepted if self.n_accepted else None


def run_production(client: Client, stream: str, split: Split) -> tuple[PolicyUsed, int, int]:
    ids = [f"prod-{i:04d}" for i in range(len(split.y_test))]
    r = client.score(split.proba_test, ids=ids, stream=stream, flag={"policy": POLICY})
    assert r.items is not None and r.policy is not None
    accepted = ~np.array(r.items.flagged)  # flagged = confidence below the threshold
    wrong = np.array(r.items.predicted) != split.y_test
    return r.policy, int(accepted.sum()), int((wrong & accepted).sum())


def run_split(
    client: Client, stream: str, seed: int, args: argparse.Namespace
) -> tuple[Split, Feedback, Outcome]:
    """Steps 1 and 3-5 on one random split, in a stream of its own."""
    split = make_split(seed)
    feedback = feed_calibration(client, stream, split, audit_rate=args.audit_rate, seed=seed)
    policy = fit_policy(client, stream, alpha=args.alpha, delta=args.delta)
    used, n_accepted, errors = run_production(client, stream, split)
    # The risk-coverage curve of the calibration set: the error rate among the items accepted
    # at each threshold, against the share accepted. Its area (AURC) sums up how well the
    # confidence ranks the errors last: lower is better, for a given accuracy.
    aurc = client.risk_coverage(stream, delta=args.delta).aurc
    return split, feedback, Outcome(policy, used, len(split.y_test), n_accepted, errors, aurc)


# %% The report -------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def say(step: str, text: str) -> None:
    """One report line: the step's name in a column of its own."""
    print(f"{step:<15}{text}")


def report_first(stream: str, split: Split, feedback: Feedback, out: Outcome) -> None:
    labeled, reviewed = feedback.summary["labeled"], feedback.summary["reviewed"]
    n_cal, pol, lab = len(split.y_cal), out.policy, feedback.labels
    say("1. data", f"digits: {N_TRAIN} train / {n_cal} calibration / {out.n_test} production")
    say("", f"LogisticRegression, accuracy on production {split.accuracy_test:.3f}")
    say(
        "2. stream",
        f"{stream!r}: {feedback.n_labelled_batch} items labelled in their batches,"
        f" {n_cal - feedback.n_labelled_batch} without labels ({feedback.n_audited} audited)",
    )
    say(
        "3. labels",
        f"audit queue labelled late: matched {lab.matched}, replaced {lab.replaced},"
        f" unknown {lab.unknown}",
    )
    say("", f"calibration set n={labeled['n']}, accuracy {fmt(labeled['accuracy'], 3)}")
    say(
        "",
        f"a fixed min_confidence 0.5 let through items with error"
        f" {fmt(labeled['accepted_error_rate'])} (no guarantee)",
    )
    say("", f"labels of {reviewed['n']} flagged, unaudited items: kept apart, not in any fit")
    feasible = "feasible" if pol.feasible else "INFEASIBLE, flags everything"
    say(
        "4. policy",
        f"{pol.name!r} v{pol.version} (alpha {pol.alpha}, delta {pol.delta}): {feasible},"
        f" threshold {fmt(pol.threshold)}",
    )
    say(
        "",
        f"calibration: {pol.n_accepted} of {pol.n_calibration} accepted (coverage"
        f" {pol.coverage:.3f}), {pol.errors} wrong, risk_upper_bound {fmt(pol.risk_upper_bound)}",
    )
    say(
        "5. production",
        f"{out.n_test} items with flag={{'policy': {POLICY!r}}} (v{out.used.version}):"
        f" {out.n_accepted} accepted (coverage {out.coverage:.3f})",
    )
    say(
        "",
        f"guarantee: error among accepted <= alpha = {pol.alpha:.4f}"
        f" with probability >= {1 - pol.delta:.2f}",
    )
    realized = out.realized_error
    wrong = f" ({out.errors} wrong of {out.n_accepted})" if realized is not None else ""
    say("", f"realized error among accepted: {fmt(realized)}{wrong}")
    say("", f"AURC of the calibration set: {fmt(out.aurc)}")


def report_repeats(outcomes: list[Outcome], *, alpha: float, delta: float) -> None:
    n = len(outcomes)
    errors = [o.realized_error for o in outcomes if o.policy.feasible]
    over = sum(e is not None and e > alpha for e in errors)
    say(
        "6. repeats",
        f"{n} random splits: realized error > alpha in {over} ({over / n:.0%});"
        f" the guarantee allows delta = {delta:.0%}",
    )
    if len(errors) < n:
        n_first = least_accepted(alpha, delta)
        say(
            "",
            f"{n - len(errors)} infeasible (flagging everything): their {n_first} most confident",
        )
        say("", "calibration items held an error, which ends the fixed sequence at its first test")
    if errors:
        coverage = np.mean([o.coverage for o in outcomes if o.policy.feasible])
        mean_error = np.mean([e for e in errors if e is not None])
        say(
            "",
            f"feasible splits: mean coverage {coverage:.3f}, mean realized error {mean_error:.4f}",
        )
    say("", "(the realized error of a few hundred items is itself a noisy estimate)")


def least_accepted(alpha: float, delta: float) -> int:
    """The fewest accepted items whose bound can reach alpha: (1 - alpha)^n <= delta."""
    return math.ceil(math.log(delta) / math.log1p(-alpha))


# %% Putting it together ----------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", help="use this xent server instead of starting one")
    parser.add_argument("--api-key", help="its API key, if it needs one")
    parser.add_argument("--alpha", type=float, default=0.02, help="target error (0.02)")
    parser.add_argument("--delta", type=float, default=0.1, help="allowed failure rate (0.1)")
    parser.add_argument("--audit-rate", type=float, default=0.5, help="audit share (0.5)")
    parser.add_argument("--repeats", type=int, default=20, help="random splits (20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first split (0)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    started = time.perf_counter()
    # Against your own server, stream names get a suffix so that a rerun starts afresh.
    prefix = "digits" if args.url is None else f"digits-{uuid.uuid4().hex[:8]}"
    with server_url(args.url) as url, Client(url, api_key=args.api_key) as client:
        where = "your server" if args.url else "xent serve, SQLite in a temporary directory"
        print(f"xentcore risk-control loop: {url} ({where})")
        outcomes = []
        for k in range(args.repeats):
            stream = f"{prefix}-{k}"
            split, feedback, outcome = run_split(client, stream, args.seed + k, args)
            if k == 0:
                report_first(stream, split, feedback, outcome)
            outcomes.append(outcome)
        if args.repeats > 1:
            report_repeats(outcomes, alpha=args.alpha, delta=args.delta)
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
