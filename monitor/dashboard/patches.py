"""One ``PATCH-DOC`` message per flush instead of one per changed model.

Bokeh's server sends every change of a session's document as its own
``PATCH-DOC`` message, and building each message starts with a reference
table of every model in the document (``Serializer(references=...)``). A
flush that streams into ten sources, moves a header value and numbers the
flush for the page's pacing so built a dozen such tables and sent a dozen
messages, and at 1,000 points/s that was most of the server's time and of
the latency to the page. ``OnePatch`` collects the changes made inside
``with one_patch.batched():`` and encodes each when it happens, as Bokeh
does (so a model added and then streamed into in the same flush is sent as
it was when added, followed by the stream), but with one serializer and
one message for the run of changes between structural ones. A change that
puts models in place (new children, new renderers) goes in a message of its
own, as Bokeh sends it: BokehJS builds the views of new models
asynchronously, after the message that adds them, and a later change in
the same message can reach a parent whose child views do not exist yet
(``_update_layout`` fails on the missing view). Roots added or removed, and
a change echoed back while Bokeh applies a page's own patch (which goes to
every connection but that page's), also go alone. Streams, patches and
plain property changes, the whole of a live flush, share one message.
Arrays up to ``INLINE_BYTES`` travel inside that message (see
``_InliningSerializer``), so a live flush is three websocket frames.

This reaches into ``bokeh.server.session.ServerSession`` (its per-event
dispatch ``_document_patched``, its subscribed connections and pending
writes) as of Bokeh 3.8 and 3.9. If those are not there, or the document is
not served by a Bokeh server session (a test's bare ``Document``), changes
go out one message each, as Bokeh sends them; nothing is lost either way.

Thread safety: used only on the server's event loop, with the session's
document lock held (inside document callbacks).
"""

from __future__ import annotations

import base64
import gzip
import logging
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from bokeh.core.serialization import BytesRep, Ref, Serializer
from bokeh.document import Document
from bokeh.document.events import DocumentPatchedEvent, ModelChangedEvent, RootAddedEvent, RootRemovedEvent
from bokeh.document.json import PatchJson
from bokeh.model import Model
from bokeh.model.util import collect_models
from bokeh.protocol.messages.patch_doc import patch_doc
from bokeh.server.contexts import BokehSessionContext
from bokeh.server.session import ServerSession

log = logging.getLogger(__name__)
_REQUIRED = ("_document_patched", "_subscribed_connections", "_pending_writes", "_current_patch_connection")
_warned = False
_batch: ContextVar[_Batch | None] = ContextVar("labscreen_patch_batch", default=None)
"""The batch of the ``OnePatch.batched`` block being run, if any (all of it runs on the event loop's thread)."""


class OnePatch:
    """Batches one document's changes into one ``PATCH-DOC`` per ``batched()`` block."""

    def __init__(self, doc: Document) -> None:
        self._doc = doc

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Send the changes made inside the block as one message when it ends.

        Nested blocks join the outer one. Never raises on its own account:
        if the session cannot be batched, changes go out as Bokeh sends them.
        A session with no connection yet (its page is still loading BokehJS)
        is left to Bokeh, which sends nothing then: the page pulls the whole
        document when it connects, so encoding the changes would be wasted
        (a quarter of a second for a run's history on ten charts).
        """
        session = _server_session(self._doc)
        if session is None or not session._subscribed_connections or "_document_patched" in vars(session):
            yield
            return
        batch = _Batch(self._doc, session)
        session._document_patched = batch.add  # type: ignore[method-assign]  # shadows it for this block only
        token = _batch.set(batch)
        try:
            yield
        finally:
            _batch.reset(token)
            del session._document_patched
            batch.send()


Adopt = Callable[[Model], None]
"""Themes a model made inside a ``frozen`` block, and every model it holds, before it is put in place."""


@contextmanager
def frozen(doc: Document | None) -> Iterator[Adopt]:
    """Have Bokeh find the document's models once, when the block ends, not after each change that adds some.

    Bokeh walks every model of a document again after each change that puts
    models in place or takes them out (a renderer added, a list of renderers
    set): 0.12 s each on a page of 25 charts, and adding a run to a
    comparison made 225 of them. Inside the block, models put in place join
    the document only at its end, yet are sent to the page when put in
    place. So, before putting a new model in place, make it whole (a change
    made to it afterwards inside the block is not sent) and pass it to the
    ``adopt`` the block is given, which gives it the document's theme as
    joining the document would have (else a lab screen's new chart came
    without its dark colours). Models a batch (``OnePatch.batched``) sent
    inside the block count as sent, as Bokeh counts them outside one;
    otherwise the next change naming them would send them whole again
    (outside a batch, every model the block put in place counts as sent:
    Bokeh sent it when it was).
    ``doc`` None (a panel not yet in a document): nothing to defer.
    """
    if doc is None:
        yield lambda _model: None
        return

    def adopt(model: Model) -> None:
        for held in model.references():
            if held.document is None:
                doc.theme.apply_to_model(held)

    models = doc.models
    freeze = models.freeze()  # Bokeh's own, which recomputes on leaving: but not if the block raised
    freeze.__enter__()
    try:
        yield adopt
    finally:
        freeze.__exit__(None, None, None)
        batch = _batch.get()
        # Outside a batch (a page's own change, as a chart's axis toggle) Bokeh sent each change as it
        # came, the models put in place whole: all of them are on the page, or it has yet to pull it all.
        models.flush_synced((lambda model: not batch.sent(model)) if batch is not None else None)


INLINE_BYTES = 64 * 1024
"""Arrays up to this size go inside the message's JSON (base64), larger ones as binary frames."""
INLINE_GZIP_LEVEL = 1
"""BokehJS gunzips inline arrays; a live flush's few points hardly compress, so little effort goes in."""


class _InliningSerializer(Serializer):
    """A ``Serializer`` that writes small arrays into the message itself, and names known models lazily.

    Bokeh sends every array of a message as two websocket frames of its own
    (a header and the bytes). A flush streaming a few points into ten
    sources, four columns each, was over a hundred frames, and the page
    handles every frame as a task of its own. Base64 inside the JSON costs a
    third more bytes (gzipped first, as BokehJS expects), which for a few
    kilobytes is nothing; arrays over ``INLINE_BYTES`` (a line re-sent
    whole, a heatmap image) still go as binary frames. Bokeh's own base64
    path also makes a buffer id (two settings lookups) it then drops, and
    gzips at level 9: a fifth of a live flush's time between them.

    Bokeh's ``Serializer`` starts with the reference of every model the page
    has (several hundred here) though a live flush names a dozen; those are
    made here when first named.
    """

    def __init__(self, *, references: AbstractSet[Model] = frozenset()) -> None:
        super().__init__()
        self._known = references

    def has_ref(self, obj: Any) -> bool:
        return self.get_ref(obj) is not None

    def get_ref(self, obj: Any) -> Ref | None:
        ref = super().get_ref(obj)
        if ref is None and isinstance(obj, Model) and obj in self._known:
            ref = obj.ref
            self.add_ref(obj, ref)
        return ref

    def _encode_bytes(self, obj: bytes | memoryview) -> BytesRep:
        size = obj.nbytes if isinstance(obj, memoryview) else len(obj)  # len() of a memoryview counts items
        if size > INLINE_BYTES:
            return super()._encode_bytes(obj)
        data = obj.tobytes() if isinstance(obj, memoryview) else obj  # gzip's length field counts len()
        packed = gzip.compress(data, compresslevel=INLINE_GZIP_LEVEL, mtime=1)
        return BytesRep(type="bytes", data=base64.b64encode(packed).decode("ascii"))


class _Batch:
    """The encoded changes of one block, as the messages that will carry them, in order."""

    def __init__(self, doc: Document, session: ServerSession) -> None:
        self._doc, self._session = doc, session
        self._serializer: Serializer | None = None
        self._serializers: list[Serializer] = []
        self._placed: set[Model] = set()
        """Models put in place by this batch's earlier messages: later ones name them, as the page has them.

        Inside ``frozen`` the document does not list them yet, and a line added to a chart (its renderers,
        then its hover tool's) was sent whole twice, its data included."""
        self._encoded: list[Any] = []
        self._messages: list[tuple[patch_doc, Any]] = []
        """Each message, with the connection it must not go to (or None)."""
        self.events = 0

    def add(self, event: DocumentPatchedEvent) -> None:
        # The page's own change echoed back (a callback's change made while Bokeh applies that
        # page's patch): Bokeh sends it to every connection but that page's. It goes alone, in order.
        echo = self._session._current_patch_connection if event.setter is self._session else None
        structural = (
            echo is not None
            or isinstance(event, (RootAddedEvent, RootRemovedEvent))
            or (isinstance(event, ModelChangedEvent) and _holds_model(event.new))
        )
        if structural:
            self._close()
        if self._serializer is None:
            references = self._doc.models.synced_references  # a new set each time: ours to add to
            if self._placed:
                references |= self._placed
            self._serializer = _InliningSerializer(references=references)
            self._serializers.append(self._serializer)
        self._encoded.append(self._serializer.encode(event))
        self.events += 1
        if structural:
            if isinstance(event, ModelChangedEvent):
                self._placed.update(collect_models(event.new))
            self._close(skip=echo)

    def sent(self, model: Model) -> bool:
        """Whether a message of this batch carries ``model`` (whole, or as a reference to it)."""
        return model in self._placed or any(serializer.has_ref(model) for serializer in self._serializers)

    def send(self) -> None:
        """Send the messages, in order, to the session's connections."""
        self._close()
        session, writes = self._session, self._session._pending_writes
        if writes is None:  # not inside the document lock after all: nothing can be awaited
            log.error("a batch of %d changes ended outside the document lock; not sent", self.events)
            return
        for message, skip in self._messages:
            for connection in list(session._subscribed_connections):
                if connection is not skip:
                    writes.append(connection._socket.send_message(message))

    def _close(self, skip: Any = None) -> None:
        """End the current message (as ``patch_doc.create`` ends one), not to be sent to ``skip``."""
        serializer = self._serializer
        if serializer is None:
            return
        message = patch_doc(patch_doc.create_header(), {}, PatchJson(events=self._encoded))
        message.add_buffers(*serializer.buffers)
        self._doc.models.flush_synced(lambda model: not serializer.has_ref(model))
        self._messages.append((message, skip))
        self._serializer, self._encoded = None, []


def _holds_model(value: Any, depth: int = 2) -> bool:
    """Whether ``value`` is a model or holds one (in lists, tuples or dicts, ``depth`` levels down)."""
    if isinstance(value, Model):
        return True
    if depth <= 0:
        return False
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, (list, tuple)) and any(_holds_model(item, depth - 1) for item in value)


def _server_session(doc: Document) -> ServerSession | None:
    """The Bokeh ``ServerSession`` serving ``doc`` with its lock held, or None."""
    global _warned
    context = doc.session_context
    session = context.session if isinstance(context, BokehSessionContext) else None
    if not isinstance(session, ServerSession):
        return None
    if not all(hasattr(session, name) for name in _REQUIRED):
        if not _warned:
            _warned = True
            log.warning("this Bokeh's server session cannot batch patches; each change goes out as its own message")
        return None
    return session if session._pending_writes is not None else None
