// Log lines go to stderr, one per event worth an operator's attention: start,
// state changes, changes of the poll error reason. Never one per connection.
// As text, or as JSON lines (time, level, msg, then the event's fields) for a
// log shipper.

export type Level = "info" | "warning" | "error";
export type LogFormat = "text" | "json";

/** Extra facts of an event; JSON lines carry them as keys, text lines only the message. */
export type Fields = Record<string, string | number | boolean | null>;

export interface Logger {
  info(message: string, fields?: Fields): void;
  warning(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
  /** Switches the format, e.g. on a reload. */
  format: LogFormat;
}

export function createLogger(
  write: (line: string) => void = (line) => process.stderr.write(line),
  format: LogFormat = "text",
): Logger {
  const emit = (level: Level, message: string, fields?: Fields) => {
    const time = new Date().toISOString();
    if (logger.format === "json") write(JSON.stringify({ time, level, msg: message, ...fields }) + "\n");
    else write(`${time} ${level}: ${message}\n`);
  };
  const logger: Logger = {
    info: (message, fields) => emit("info", message, fields),
    warning: (message, fields) => emit("warning", message, fields),
    error: (message, fields) => emit("error", message, fields),
    format,
  };
  return logger;
}
