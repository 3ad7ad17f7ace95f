// Opens every page of an evidence pack in headless Chromium from file:// and fails on any
// console error, page error or network request (the pack must be self-contained), then checks
// the ownership matrix and each flow diagram render with a size, and writes screenshots.
//
//   node check-pack.mjs PACK_DIR SCREENSHOT_DIR
import { chromium } from "playwright-core";
import { readdirSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [pack, shots] = process.argv.slice(2).map((p) => resolve(p));
mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const problems = [];
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`); });
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("request", (r) => { if (!r.url().startsWith("file://")) problems.push(`network request: ${r.url()}`); });
page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));

const pages = ["index.html", ...readdirSync(join(pack, "flows")).filter((f) => f.endsWith(".html")).map((f) => `flows/${f}`)];
const report = { pages: [] };
for (const file of pages) {
  await page.goto(pathToFileURL(join(pack, file)).href, { waitUntil: "load" });
  const facts = await page.evaluate(() => {
    const box = (el) => { if (!el) return null; const r = el.getBoundingClientRect(); return { w: r.width, h: r.height }; };
    return {
      title: document.title,
      matrix: box(document.querySelector("#ownership-matrix")),
      matrixRows: document.querySelectorAll("#ownership-matrix tr").length,
      diagram: box(document.querySelector("svg.flow-diagram")),
      stages: document.querySelectorAll("svg.flow-diagram .stage").length,
      failures: document.querySelectorAll("svg.flow-diagram .failure").length,
      owners: document.querySelectorAll("svg.flow-diagram .owner").length,
      failureRows: document.querySelectorAll("table.failures tr").length - 1,
      runbooks: [...document.querySelectorAll("table.failures tr td:nth-child(4)")].map((td) => td.textContent),
      links: [...document.querySelectorAll("a")].map((a) => a.href),
    };
  });
  const name = file.replace(/[\/.]/g, "_");
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  // Element screenshots: a blank box of the same size compresses to a few hundred bytes, a
  // rendered table or diagram to several kilobytes.
  const shot = async (selector) => {
    const el = await page.$(selector);
    if (!el) return 0;
    const png = await el.screenshot({ path: join(shots, `${name}-${selector.replace(/[^a-z]/g, "")}.png`) });
    return png.length;
  };
  facts.matrixPng = await shot("#ownership-matrix");
  facts.diagramPng = await shot("svg.flow-diagram");
  report.pages.push({ file, ...facts });
}
await browser.close();
report.problems = problems;
console.log(JSON.stringify(report));
