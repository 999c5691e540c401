// replstatus demo: not built yet in this commit.
import type { DemoConfig } from "./config.ts";

export async function runDemo(_config: DemoConfig): Promise<number> {
  process.stderr.write("replstatus: demo is not available yet\n");
  return 1;
}
