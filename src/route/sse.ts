// Server-Sent Events as a subscriber reads them (WHATWG HTML, "Parsing an
// event stream"): lines end with LF, CRLF or CR; `field: value`; a line that
// starts with ":" is a comment; a blank line dispatches the event. Pure: text
// in, events and comments out. A line longer than the bound is an error, so a
// broken peer cannot make the reader hold its stream.

export interface SseEvent {
  /** The `id:` field, or undefined without one. */
  id: string | undefined;
  /** The `event:` field, "message" without one. */
  event: string;
  /** The `data:` lines, joined by LF. */
  data: string;
}

export interface SseReader {
  /** Feeds decoded text; calls the handlers for what it completes. Throws on a line over the bound. */
  feed(text: string): void;
}

/** A stream line longer than this ends the stream. */
export const MAX_LINE_CHARS = 256 * 1024;

export function createSseReader(
  onEvent: (e: SseEvent) => void,
  onComment: (text: string) => void = () => {},
): SseReader {
  let rest = "";
  let id: string | undefined;
  let event = "";
  let data: string[] = [];

  function line(text: string): void {
    if (text === "") {
      if (data.length > 0) onEvent({ id, event: event || "message", data: data.join("\n") });
      event = "";
      data = [];
      return;
    }
    if (text.startsWith(":")) return onComment(text.slice(1).trimStart());
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
    else if (field === "id" && !value.includes("\0")) id = value;
  }

  return {
    feed(text) {
      rest += text;
      let from = 0;
      for (;;) {
        const lf = rest.indexOf("\n", from);
        const cr = rest.indexOf("\r", from);
        const end = lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr);
        // A CR at the very end may be the first half of a CRLF: wait for more.
        if (end < 0 || (end === cr && cr === rest.length - 1)) break;
        line(rest.slice(from, end));
        from = end + (end === cr && rest[cr + 1] === "\n" ? 2 : 1);
      }
      rest = rest.slice(from);
      if (rest.length > MAX_LINE_CHARS) throw new Error(`a stream line over ${MAX_LINE_CHARS} characters`);
    },
  };
}
