// The status rules (model.ts) as text, for the page, and as functions made from
// that same text, for `replstatus status`. model.ts is only ever imported as
// text here: `bun build --compile` refuses a file imported both as text and as a
// module, and one text means the page and the terminal apply the same rules.
// ARCHITECTURE.md, "The status page".
import type * as Model from "./model.ts";
// @ts-expect-error: the file's text, a string (Bun's import attribute)
import modelText from "./model.ts" with { type: "text" };

/** A module's text as plain browser JavaScript: types stripped, imports and `export` dropped. */
export function plain(source: string): string {
  const js = new Bun.Transpiler({ loader: "ts", target: "browser" }).transformSync(source);
  return js.replace(/^import[^;]*;\s*$/gm, "").replace(/^export /gm, "");
}

let model: string | undefined;

/** model.ts as plain JavaScript, made on first use. */
export function modelScript(): string {
  return (model ??= plain(modelText));
}

export type Rules = Pick<typeof Model, "answerWord" | "clusterOf" | "disagreements" | "hostOf" | "shortId">;

let rules: Rules | undefined;

/** The functions of model.ts, evaluated once from modelScript(). */
export function statusRules(): Rules {
  rules ??= new Function(
    `"use strict";\n${modelScript()}\nreturn { answerWord, clusterOf, disagreements, hostOf, shortId };`,
  )();
  return rules!;
}
