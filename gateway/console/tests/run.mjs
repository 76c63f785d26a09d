// Runs every browser test of the console (tests/*.test.mjs) against a running
// `metrix dev`, one after another, in one Chromium.
//
//   node tests/run.mjs GATEWAY_URL SCREENSHOT_DIR [NAME…]
//
// Prints one line per check; exits 0 when every check passes, 1 otherwise.
// Driven by crates/metrix/tests/console.rs.
import { readdirSync } from "node:fs";
import { Suite } from "./lib.mjs";

const OVERALL_TIMEOUT_MS = 300_000;
const [gateway, screenshots, ...only] = process.argv.slice(2);
if (!gateway || !screenshots) {
  console.error("usage: node tests/run.mjs GATEWAY_URL SCREENSHOT_DIR [NAME…]");
  process.exit(2);
}
setTimeout(() => {
  console.error(`FAIL no result after ${OVERALL_TIMEOUT_MS} ms`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS).unref();

const tests = readdirSync(new URL(".", import.meta.url))
  .filter((name) => name.endsWith(".test.mjs"))
  .filter((name) => only.length === 0 || only.some((wanted) => name.startsWith(wanted)))
  .sort();
let failed = 0;
const suite = await Suite.open(gateway, screenshots);
for (const name of tests) {
  console.log(`---- ${name}`);
  try {
    const { default: test } = await import(`./${name}`);
    await test(suite);
  } catch (error) {
    failed += 1;
    console.error(`FAIL ${name}: ${error.stack ?? error}`);
  }
  if (suite.pageErrors.length > 0) {
    failed += 1;
    console.error(`FAIL ${name}: errors in the page: ${suite.pageErrors.join("; ")}`);
    suite.pageErrors = [];
  }
}
await suite.close();
console.log(failed === 0 ? `all ${tests.length} browser tests passed` : `${failed} of ${tests.length} browser tests failed`);
process.exit(failed === 0 ? 0 : 1);
