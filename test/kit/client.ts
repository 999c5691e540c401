// A client bound to a chosen source address, as a peer outside or inside --allow connects.
import { connect } from "node:net";

/** The raw text a peer bound to `localAddress` gets ("" when closed unanswered). */
export function answerFrom(port: number, localAddress: string, host = "127.0.0.1"): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = connect({ port, host, localAddress });
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("close", () => resolve(Buffer.concat(chunks).toString()));
    s.on("error", () => {});
  });
}
