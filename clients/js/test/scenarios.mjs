// Runs one of cases.mjs's scenarios in Node against a running `wsctl dev`:
//   WSCTL_URL=ws://127.0.0.1:PORT/dev WSCTL_BASE=http://127.0.0.1:PORT node test/scenarios.mjs drops
// Prints the scenario's figures as one JSON line; exits 1 with the reason when it fails.
// WSCTL_CLIENT points at another build of the package (e.g. a copy with a feature turned off).
import WebSocket from "ws";
import * as cases from "./cases.mjs";

const name = process.argv[2];
const url = process.env.WSCTL_URL;
const base = process.env.WSCTL_BASE;
if (!cases[name] || !url || !base) {
  console.error(`usage: WSCTL_URL=ws://… WSCTL_BASE=http://… node scenarios.mjs ${Object.keys(cases).join("|")}`);
  process.exit(2);
}
const module = process.env.WSCTL_CLIENT ?? new URL("../dist/index.js", import.meta.url).href;
const { Client } = await import(module);
const options = {};
if (process.env.WSCTL_MESSAGES) options.messages = Number(process.env.WSCTL_MESSAGES);
if (process.env.WSCTL_RATE) options.rate = Number(process.env.WSCTL_RATE);
options.tag = "node";

const limit = setTimeout(() => {
  console.error(`${name}: still running after 900 s`);
  process.exit(1);
}, 900_000);
try {
  const result = await cases[name]({ Client, WebSocket, url, base, options });
  console.log(JSON.stringify({ scenario: name, runtime: `node ${process.version}`, ...result }));
  clearTimeout(limit);
  process.exit(0);
} catch (e) {
  console.error(`${name}: ${e.message}`);
  process.exit(1);
}
