// The bench's own PostgreSQL client, set up as the poller's: one connection,
// no recycling, no type fetch, notices silenced, over Bun's native socket
// (src/poll/worker/pgsocket.ts), so a round trip measured here is the poll's.
import postgres from "postgres";
import { bunPgSocket, type PgSocketOptions } from "../src/poll/worker/pgsocket.ts";

export function pollerLikeSql(url: string): postgres.Sql {
  // `socket` is read by postgres.js but missing from its types.
  const options: postgres.Options<{}> & { socket(o: PgSocketOptions): unknown } = {
    max: 1,
    idle_timeout: 0,
    max_lifetime: null,
    fetch_types: false,
    onnotice: () => {},
    socket: (o: PgSocketOptions) => bunPgSocket(o),
  };
  return postgres(url, options);
}
