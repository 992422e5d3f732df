// Open every page of a built book in headless Chromium and report what a reader would see.
//
//   node tests/browser_check.js <book html dir> <screenshot dir> <page.html>...
//
// The book is served on a loopback port by a tiny static server; every request the pages make is
// recorded and any that would leave the machine is aborted. For each page the JSON report on
// stdout lists its tables (header texts, body rows), whether MathJax typeset its math, the
// widgets that were rendered, and for each explorer Dropdown whether choosing another option
// changed the visible image. tests/test_book.py makes the assertions.
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const { chromium } = require("playwright-core");

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const TYPES = {
  ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
  ".png": "image/png", ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf",
  ".eot": "application/vnd.ms-fontobject", ".json": "application/json",
};

/** Serve `root` on 127.0.0.1 (a free port); resolves to the server. */
function serve(root) {
  const server = http.createServer((req, res) => {
    const file = path.join(root, decodeURIComponent(new URL(req.url, "http://x").pathname));
    fs.readFile(file, (err, body) => {
      if (err || !file.startsWith(root)) { res.writeHead(404); res.end(); return; }
      res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream" });
      res.end(body);
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** True for URLs that stay on this machine. */
function isLocal(url) {
  const { protocol, hostname } = new URL(url);
  if (["file:", "data:", "blob:", "about:"].includes(protocol)) return true;
  return ["127.0.0.1", "localhost", "[::1]"].includes(hostname);
}

/** Sources of the widget images a reader can see right now. */
function visibleImages(page) {
  return page.$$eval(".jupyter-widgets img", (imgs) =>
    imgs.filter((img) => img.offsetParent !== null && img.getBoundingClientRect().width > 0)
        .map((img) => img.src));
}

/** Choose the second option of every widget Dropdown and record the visible images around it. */
async function exploreDropdowns(page) {
  const selects = await page.$$(".jupyter-widgets select");
  const changes = [];
  for (const select of selects) {
    const options = await select.$$eval("option", (opts) => opts.map((o) => o.value));
    const before = await visibleImages(page);
    await select.selectOption(options[1 % options.length]);
    await page.waitForTimeout(300);
    const after = await visibleImages(page);
    changes.push({ options: options.length, before, after });
  }
  return changes;
}

/** Everything the report says about one page. */
async function inspect(page, url, shot) {
  await page.goto(url, { waitUntil: "load" });
  await page.waitForTimeout(500);
  const hasWidgetState = await page.$('script[type="application/vnd.jupyter.widget-state+json"]') !== null;
  // The widget manager puts a .widget-subarea before each displayed view once it has rendered it.
  await page.waitForFunction(() => document.querySelectorAll(".widget-subarea").length >=
    document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
  null, { timeout: 20000 }).catch(() => {});
  const report = {
    title: await page.title(),
    tables: await page.$$eval("article table", (ts) => ts.map((t) => ({
      headers: Array.from(t.querySelectorAll("th")).map((th) => th.textContent.trim()),
      rows: t.querySelectorAll("tbody tr").length,
      // how far the table reaches past the article's content box (> 0: cut off or scrolled)
      overflow: Math.round(t.getBoundingClientRect().right
        - t.closest("article").getBoundingClientRect().right + 0.5),
      scrolls: t.parentElement.scrollWidth > t.parentElement.clientWidth + 1,
    }))),
    articleWidth: await page.$eval("article", (a) => Math.round(a.getBoundingClientRect().width)).catch(() => 0),
    math: await page.$$eval("mjx-container", (m) => m.length),
    rawMath: await page.$$eval(".math", (m) => m.length),
    hasWidgetState,
    views: await page.$$eval('script[type="application/vnd.jupyter.widget-view+json"]', (v) => v.length),
    rendered: await page.$$eval(".widget-subarea", (r) => r.length),
    widgets: await page.$$eval(".jupyter-widgets", (w) => w.length),
    images: (await visibleImages(page)).length,
  };
  await page.screenshot({ path: shot, fullPage: true });
  report.dropdowns = await exploreDropdowns(page);
  if (report.dropdowns.length) await page.screenshot({ path: shot.replace(/\.png$/, "-explored.png"), fullPage: true });
  return report;
}

async function main() {
  const [root, shots, ...pages] = process.argv.slice(2);
  const server = await serve(path.resolve(root));
  const base = `http://127.0.0.1:${server.address().port}/`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const requests = { local: [], external: [] };
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (isLocal(url)) { requests.local.push(url); return route.continue(); }
    requests.external.push(url);
    return route.abort();
  });
  const report = { pages: {}, requests, errors: [] };
  fs.mkdirSync(shots, { recursive: true });
  for (const name of pages) {
    const page = await context.newPage();
    page.on("pageerror", (err) => report.errors.push(`${name}: ${err.message}`));
    page.on("websocket", (ws) => requests.external.push(ws.url()));
    const shot = path.join(shots, name.replace(/[\/]/g, "_").replace(/\.html$/, ".png"));
    report.pages[name] = await inspect(page, base + name, shot);
    await page.close();
  }
  await browser.close();
  server.close();
  process.stdout.write(JSON.stringify(report, null, 1));
}

main().catch((err) => { console.error(err); process.exit(1); });
