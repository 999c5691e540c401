// Log lines go to stderr, one per event worth an operator's attention: start,
// state changes, changes of the poll error reason. Never one per connection.

export type Level = "info" | "warning" | "error";

export interface Logger {
  info(message: string): void;
  warning(message: string): void;
  error(message: string): void;
}

export function createLogger(write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  const emit = (level: Level, message: string) => write(`${new Date().toISOString()} ${level}: ${message}\n`);
  return {
    info: (message) => emit("info", message),
    warning: (message) => emit("warning", message),
    error: (message) => emit("error", message),
  };
}
