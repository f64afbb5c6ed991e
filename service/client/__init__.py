"""Python client of the service: ``Client`` (blocking) and ``AsyncClient``, over httpx.

Arrays may be numpy arrays, lists, or anything with ``__array__`` (pandas ``DataFrame``,
``Series`` and ``Index``, ...): those are converted with ``np.asarray`` (so a DataFrame sends
exactly what ``df.to_numpy()`` sends; a pandas index is ignored, rows go in order). Strings
are sent as strings; a missing value (NaN, ``None``, ``pd.NA``) is sent as JSON ``null``, which
the server rejects with its usual 422 naming the index. Large numeric numpy arrays
(``binary_threshold`` elements or more) are sent as binary tensors (see the README): no JSON text
is made for them and the server reads them without parsing. Results come back as the typed
response models of ``service.schemas``; an error answer raises :class:`XentError` with the status
and ``detail``.

``class_names`` whose entries are not all strings (such as a scikit-learn model's
``classes_`` of integers) are sent as ``[str(c) for c in class_names]``; 1-D ``labels`` of
integers or booleans, or of floats that are all whole numbers, are then sent as names too,
matched by value: a label equal to class ``c`` is sent as ``str(c)``, one equal to no class as
``str(label)`` (the server's 422 names its index). Integer labels would otherwise be read as
class *indices* in [0, K). String labels, 2-D targets and soft (fractional) binary targets are
sent as they are. So ``score(model.predict_proba(X), y, class_names=model.classes_)`` scores
``y`` by value, whatever the classes are.

The feedback loop of a stream (API.md section 9): score with ``stream=``, ``ids=`` and
``audit_rate=`` (``r.audit`` lists the items drawn for review), list the review queue with
``items(stream, audit=True, labeled=False)`` (newest first; pass ``next_cursor`` as ``cursor=``
for the next page) and send the verdicts with ``label(stream, ids, labels)``.

Inside: ``encoding`` makes request bodies, ``endpoints`` builds every request once (path, body,
headers, response model), ``clients`` sends them, blocking or awaited.

>>> from service.client import Client
>>> with Client("http://127.0.0.1:8000", api_key="...") as xent:  # doctest: +SKIP
...     r = xent.score(probabilities, labels, ids=ids, flag={"min_confidence": 0.6})
...     r.loss.mean, r.flagged.ids
...     queue = xent.items("fraud", audit=True, labeled=False, limit=50)
...     xent.label("fraud", [it.id for it in queue.items], verdicts)
"""

from service.client.clients import AsyncClient, Client
from service.client.encoding import PIECE_BYTES as PIECE_BYTES
from service.client.encoding import encode as encode
from service.client.encoding import encode_parts as encode_parts
from service.client.endpoints import XentError

__all__ = ["AsyncClient", "Client", "XentError"]
