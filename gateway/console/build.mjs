// Builds the console into dist/: one script and one stylesheet named by the
// hash of their content, index.html pointing at them, and a gzip copy of each
// file. The gateway embeds dist/ (gateway/build.rs). The output depends only
// on the sources and the locked packages, so CI rebuilds it and fails when
// the committed dist/ differs.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { gzipSync, constants } from "node:zlib";
import { join } from "node:path";

const BUDGET_BYTES = 150 * 1024;
const here = new URL(".", import.meta.url).pathname;
const dist = join(here, "dist");

const result = await build({
  entryPoints: [join(here, "src/main.ts")],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022", "chrome110", "firefox115", "safari16"],
  outdir: dist,
  write: false,
  legalComments: "none",
  logLevel: "warning",
});

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "assets"), { recursive: true });
const names = {};
for (const file of result.outputFiles) {
  const extension = file.path.endsWith(".css") ? "css" : "js";
  const hash = createHash("sha256").update(file.contents).digest("hex").slice(0, 12);
  const name = `app-${hash}.${extension}`;
  names[extension] = name;
  writeFileSync(join(dist, "assets", name), file.contents);
}
const icon = readFileSync(join(here, "src/icon.svg"));
names.svg = `icon-${createHash("sha256").update(icon).digest("hex").slice(0, 12)}.svg`;
writeFileSync(join(dist, "assets", names.svg), icon);
const index = readFileSync(join(here, "src/index.html"), "utf8")
  .replace("/assets/ICON", `/assets/${names.svg}`)
  .replace("/assets/STYLE", `/assets/${names.css}`)
  .replace("/assets/SCRIPT", `/assets/${names.js}`);
writeFileSync(join(dist, "index.html"), index);

let total = 0;
const report = [];
for (const relative of ["index.html", ...readdirSync(join(dist, "assets")).map((name) => `assets/${name}`)]) {
  const contents = readFileSync(join(dist, relative));
  const compressed = gzipSync(contents, { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(join(dist, `${relative}.gz`), compressed);
  total += compressed.length;
  report.push(`${relative}: ${contents.length} B, ${compressed.length} B gzipped`);
}
console.log(report.join("\n"));
console.log(`console: ${total} B gzipped in all (budget ${BUDGET_BYTES} B)`);
if (total > BUDGET_BYTES) {
  console.error(`the console is over its budget by ${total - BUDGET_BYTES} B`);
  process.exit(1);
}
