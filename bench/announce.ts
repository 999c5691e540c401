// The end of a bench server's start-up, shared by floor.ts and floor-worker.ts: the port on
// stdout (server.ts reads it), then serving until SIGTERM or SIGINT.

export function announce(listener: { port: number; stop(closeActive?: boolean): void }): void {
  console.log(`port=${listener.port}`);
  const stop = () => {
    listener.stop(true);
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
