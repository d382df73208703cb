"""Read a multipart body incrementally: fields first, then the file's bytes as a stream, so a
large file goes straight to its destination instead of a spool file (werkzeug's sans-IO
decoder)."""

from __future__ import annotations

from collections.abc import Iterator

from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

READ = 256 * 1024


class MultipartError(ValueError):
    pass


class MultipartReader:
    def __init__(self, stream, boundary: str, max_field: int = 64 * 1024):
        self.stream = stream
        # The decoder's own limit counts file bytes too; text fields are capped below instead.
        self.decoder = MultipartDecoder(boundary.encode(), max_parts=16)
        self.max_field = max_field

    def _events(self):
        while True:
            event = self.decoder.next_event()
            if isinstance(event, NeedData):
                self.decoder.receive_data(self.stream.read(READ) or None)
                continue
            yield event
            if isinstance(event, Epilogue):
                return

    def fields_then_file(self) -> tuple[dict[str, str], str | None, Iterator[bytes] | None]:
        """Collect text fields until the first file part; return (fields, file field name,
        iterator over the file's bytes)."""
        fields: dict[str, str] = {}
        events = self._events()
        current, buf = None, []
        for event in events:
            if isinstance(event, File):
                return fields, event.name, self._file_data(events)
            if isinstance(event, Field):
                current, buf = event.name, []
            elif isinstance(event, Data) and current is not None:
                buf.append(event.data)
                if sum(map(len, buf)) > self.max_field:
                    raise MultipartError(f"field {current!r} is too long")
                if not event.more_data:
                    fields[current] = b"".join(buf).decode("utf-8", "replace")
                    current = None
            elif isinstance(event, Epilogue):
                break
        return fields, None, None

    @staticmethod
    def _file_data(events) -> Iterator[bytes]:
        for event in events:
            if isinstance(event, Data):
                if event.data:
                    yield event.data
                if not event.more_data:
                    return
            else:
                raise MultipartError("unexpected part inside the file data")

    def drain(self) -> None:
        while self.stream.read(READ):
            pass
