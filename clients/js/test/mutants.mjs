// Shows that the fault scenarios guard each of the client's promises: builds copies of
// dist/index.js with one of resume, gap refill, duplicate drop or publish retry turned off, and
// runs the scenarios against each; every copy must fail at least one. Needs a running
// `wsctl dev` with raised limits (see README.md), as scenarios.mjs does:
//   WSCTL_URL=ws://… WSCTL_BASE=http://… node test/mutants.mjs
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const source = readFileSync(join(here, "../dist/index.js"), "utf8");
const mutants = {
  resume: ['if (op.kind === "subscribe" && this.last !== null) frame.since = this.last;', "if (false) frame.since = this.last;"],
  "gap refill": ["  askForGap() {\n", "  askForGap() {\n    return;\n"],
  "duplicate drop": [
    "if (this.last !== null && m.serial <= this.last) return;",
    'if (this.last !== null && m.serial <= this.last) { this.emit("message", m); return; }',
  ],
  "publish retry": ["for (const p of this.queue) p.seq = null;", "this.queue = this.queue.filter((p) => p.seq === null);"],
};
const scenarios = (process.env.WSCTL_SCENARIOS ?? "gaps,drops").split(",");
const dir = mkdtempSync(join(tmpdir(), "wsctl-mutants-"));
let survivors = 0;
for (const [name, [from, to]] of Object.entries(mutants)) {
  if (!source.includes(from)) throw new Error(`dist/index.js no longer contains the code "${name}" turns off: update this file`);
  const file = join(dir, `${name.replace(/ /g, "-")}.js`);
  writeFileSync(file, source.replace(from, to));
  const caught = [];
  for (const scenario of scenarios) {
    try {
      execFileSync("node", [join(here, "scenarios.mjs"), scenario], {
        env: { ...process.env, WSCTL_CLIENT: `file://${file}`, WSCTL_MESSAGES: process.env.WSCTL_MESSAGES ?? "600" },
        stdio: ["ignore", "ignore", "pipe"],
      });
    } catch (e) {
      caught.push(`${scenario}: ${String(e.stderr).trim().slice(0, 200)}`);
    }
  }
  if (!caught.length) survivors++;
  console.log(`${name} off: ${caught.length ? `caught by ${caught.join(" | ")}` : "NOT CAUGHT"}`);
}
process.exit(survivors ? 1 : 0);
