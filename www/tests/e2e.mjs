// End-to-end test of the demo page in headless Chromium, with WebGPU running on the CPU (SwiftShader).
//
//   node www/tests/e2e.mjs http://127.0.0.1:8080/?model=model-tiny
//
// Prints one line per check (`ok - ...` or `not ok - ...`), `SKIP: ...` for a check that could not run
// because an earlier one failed, and `# ...` lines with durations and diagnostics. Exits with 0 only when
// every check passed.
//
// The page is driven through its DOM contract: document.body.dataset.state (loading, ready, running,
// error, no-webgpu) and dataset.runs (answers shown so far), and the ids #question, #ask, #method, #budget,
// #budget-value, #layer, #answer, #kept-count, #equivalent-tokens, #flops-saved, #timings, #heatmap,
// #model-description, #adapter, #load-progress, #image-choice, #image-upload, #status, #webgpu-missing.
//
// Environment:
//   SCREENSHOT        where the full-page screenshot goes (default: tests/output/demo.png beside this file);
//                     the page without WebGPU goes next to it, with `-no-webgpu` before the extension
//   CHROMIUM          the browser binary (default: /usr/bin/chromium)
//   E2E_LOAD_TIMEOUT  seconds for the model to load (default 120)
//   E2E_ANSWER_TIMEOUT  seconds for one answer (default 180)
//   E2E_REEXPORT      a shell command that exports a different bundle (another seed) into the folder the
//                     page loads; check (h) runs it and expects the next visit to download the new bundle
//                     into a new Cache API store, the old store deleted (without it, (h) is skipped)

import { execSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, parse, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const BASE_URL = process.argv[2];
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCREENSHOT = resolve(process.env.SCREENSHOT || join(HERE, "output", "demo.png"));
const LOAD_TIMEOUT_MS = 1000 * Number(process.env.E2E_LOAD_TIMEOUT || 120);
const ANSWER_TIMEOUT_MS = 1000 * Number(process.env.E2E_ANSWER_TIMEOUT || 180);
const REEXPORT = process.env.E2E_REEXPORT || "";
const QUESTION = "What color is the triangle?";
const BUNDLE_FILES = ["sparsevlm-mini.safetensors", "tokenizer.json"];
const CACHE_PREFIX = "sparsevlm-mini-";
const SMALL_BUDGET = 16;
const METHODS = ["v1.5", "v2.0", "fastv", "pdrop", "random", "dense"];
const CONTRACT_IDS = [
  "load-progress", "model-description", "adapter", "status", "webgpu-missing", "image-choice", "image-upload",
  "question", "ask", "method", "budget", "budget-value", "layer", "answer", "kept-count", "equivalent-tokens",
  "flops-saved", "timings", "heatmap",
];

// Flags every browser gets: a quiet, fresh profile that talks to nothing but the page's server.
const BASE_ARGS = [
  "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--no-first-run", "--disable-quic",
];
// WebGPU on SwiftShader, Chromium's CPU implementation of Vulkan.
const WEBGPU_ARGS = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"];

if (!BASE_URL) {
  console.error("usage: node www/tests/e2e.mjs <base-url>   (for example http://127.0.0.1:8080/?model=model-tiny)");
  process.exit(2);
}

let failures = 0;
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
const note = (line) => console.log(`# ${line}`);

function ok(name, detail) {
  console.log(`ok - ${name}${detail ? ` (${detail})` : ""}`);
}

function notOk(name, why) {
  failures += 1;
  console.log(`not ok - ${name}: ${String(why).replace(/\s+/g, " ").trim()}`);
}

function skip(name, reason) {
  console.log(`SKIP: ${name}: ${reason}`);
}

/** Runs one check: `body` returns an optional detail for the `ok` line, or throws why it failed. */
async function check(name, body) {
  try {
    ok(name, await body());
    return true;
  } catch (error) {
    notOk(name, error?.message ?? error);
    return false;
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A browser with a fresh profile, removed on close. */
async function launch(args) {
  const profile = mkdtempSync(join(tmpdir(), "sparsevlm-e2e-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...BASE_ARGS, ...args],
    viewport: { width: 1280, height: 900 },
  });
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/** Records the page's uncaught errors and its last console lines, for the checks and for diagnostics. */
function watch(page) {
  const log = { errors: [], console: [] };
  page.on("pageerror", (error) => log.errors.push(error.message ?? String(error)));
  page.on("console", (message) => {
    log.console.push(`${message.type()}: ${message.text()}`);
    if (log.console.length > 40) log.console.shift();
  });
  return log;
}

/** The state, the answer count and the status line. */
function snapshot(page) {
  return page.evaluate(() => ({
    state: document.body?.dataset.state,
    runs: Number(document.body?.dataset.runs ?? NaN),
    status: document.getElementById("status")?.textContent?.trim() ?? "",
  }));
}

/** Waits until the state is one of `states`; throws on timeout, with the last state and status. */
async function waitForState(page, states, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await snapshot(page);
    if (states.includes(now.state)) return now;
    if (Date.now() > deadline) {
      throw new Error(`state still "${now.state}" after ${seconds(timeoutMs)}; #status: "${now.status}"`);
    }
    await sleep(250);
  }
}

/**
 * Waits for an answer after `action`: dataset.runs must grow past its value before the action. Fails fast
 * when the state becomes `error`, or when the page is back to `ready` for 3 s with no new answer after it
 * started running (the question failed; #status says why). Then waits until the page is idle (state
 * `ready`, runs unchanged for 1.5 s), so that a re-run the page queued behind this one is finished too.
 * Returns the time from the action to the first new answer.
 */
async function answerAfter(page, action) {
  const before = (await snapshot(page)).runs;
  const started = Date.now();
  await action();
  let sawRunning = false;
  let readySince = null;
  let answeredAt = null;
  for (;;) {
    const now = await snapshot(page);
    const elapsed = Date.now() - started;
    if (now.state === "error") throw new Error(`state "error"; #status: "${now.status}"`);
    if (now.state === "running") sawRunning = true;
    if (now.runs > before && answeredAt === null) answeredAt = elapsed;
    if (answeredAt === null) {
      if (sawRunning && now.state === "ready") {
        readySince ??= Date.now();
        if (Date.now() - readySince > 3000) {
          throw new Error(`back to "ready" with no new answer (runs ${now.runs}); #status: "${now.status}"`);
        }
      } else {
        readySince = null;
      }
      if (elapsed > ANSWER_TIMEOUT_MS) {
        throw new Error(`no answer after ${seconds(ANSWER_TIMEOUT_MS)} (state "${now.state}", runs ${now.runs}); ` +
          `#status: "${now.status}"`);
      }
    } else {
      // Idle: ready, and no further answer for 1.5 s.
      const settled = await idle(page, now.runs);
      if (settled) return answeredAt;
      if (elapsed > answeredAt + ANSWER_TIMEOUT_MS) throw new Error("the page kept running after the answer");
    }
    await sleep(250);
  }
}

async function idle(page, runs) {
  for (let i = 0; i < 6; i++) {
    const now = await snapshot(page);
    if (now.state !== "ready" || now.runs !== runs) return false;
    await sleep(250);
  }
  return true;
}

/** The readouts of the last answer. */
function readouts(page) {
  return page.evaluate(() => {
    const text = (id) => document.getElementById(id)?.textContent?.trim() ?? null;
    return {
      answer: document.getElementById("answer")?.textContent ?? null,
      kept: text("kept-count"),
      equivalent: text("equivalent-tokens"),
      flops: text("flops-saved"),
      timings: text("timings"),
      budget: document.getElementById("budget")?.value ?? null,
      budgetValue: text("budget-value"),
      layers: [...(document.getElementById("layer")?.options ?? [])].map((o) => o.value),
    };
  });
}

/** Sets the range input as a drag would: the value, then `input` and `change` events. */
function setBudget(page, value) {
  return page.evaluate((v) => {
    const budget = document.getElementById("budget");
    budget.value = String(v);
    budget.dispatchEvent(new Event("input", { bubbles: true }));
    budget.dispatchEvent(new Event("change", { bubbles: true }));
  }, value);
}

function integer(text, what) {
  assert(/^\d+$/.test(text ?? ""), `${what} is not an integer: "${text}"`);
  return Number(text);
}

function number(text, what) {
  const value = Number.parseFloat(text ?? "");
  assert(Number.isFinite(value), `${what} is not a number: "${text}"`);
  return value;
}

function printDiagnostics(log) {
  for (const error of log.errors) note(`page error: ${error}`);
  for (const line of log.console.slice(-15)) note(`console ${line}`);
}

function withSuffix(path, suffix) {
  const p = parse(path);
  return join(p.dir, `${p.name}${suffix}${p.ext || ".png"}`);
}

/** The bundle's manifest as the page sees it (its model folder, past every cache). */
function bundleManifest(page) {
  return page.evaluate(async () => {
    const base = new URL(new URLSearchParams(location.search).get("model") ?? "model", location.href).href;
    const response = await fetch(`${base}/manifest.json`, { cache: "no-store" });
    if (!response.ok) throw new Error(`${base}/manifest.json: HTTP ${response.status}`);
    return response.json();
  });
}

/** The page's Cache API stores of bundles: name → cached URLs. */
function bundleStores(page) {
  return page.evaluate(async (prefix) => {
    const stores = {};
    for (const name of await caches.keys()) {
      if (name.startsWith(prefix)) stores[name] = (await (await caches.open(name)).keys()).map((r) => r.url);
    }
    return stores;
  }, CACHE_PREFIX);
}

/** Checks that the only bundle store is the one named by `manifest`'s hash and that it holds both files. */
async function expectOneStore(page, manifest) {
  const stores = await bundleStores(page);
  const expected = `${CACHE_PREFIX}${manifest.bundle_sha256.slice(0, 16)}`;
  const names = Object.keys(stores);
  assert(names.length === 1 && names[0] === expected,
    `the bundle stores are ${JSON.stringify(names)}, expected only ${expected}`);
  for (const file of BUNDLE_FILES) {
    assert(stores[expected].some((url) => url.endsWith(file)),
      `${file} is not in ${expected}: ${JSON.stringify(stores[expected])}`);
  }
  return expected;
}

/** Reloads the page and returns the bundle files it requested from the network while loading. */
async function reloadAndRecordDownloads(page) {
  const downloads = [];
  const record = (request) => {
    if (BUNDLE_FILES.some((file) => request.url().endsWith(file))) downloads.push(request.url());
  };
  page.on("request", record);
  try {
    await page.reload({ waitUntil: "load" });
    const now = await waitForState(page, ["ready", "error", "no-webgpu"], LOAD_TIMEOUT_MS);
    assert(now.state === "ready", `state "${now.state}" after the reload; #status: "${now.status}"`);
  } finally {
    page.off("request", record);
  }
  return downloads;
}

async function withWebGpu() {
  const { context, close } = await launch(WEBGPU_ARGS);
  const page = context.pages()[0] ?? (await context.newPage());
  const log = watch(page);
  const timings = {};
  try {
    // (a) The page loads.
    let loaded = false;
    const navigated = Date.now();
    await check("(a) the page loads: its state leaves \"loading\" with no uncaught page errors", async () => {
      const response = await page.goto(BASE_URL, { waitUntil: "load", timeout: 60_000 });
      assert(response && response.ok(), `HTTP ${response?.status()} for ${BASE_URL}`);
      timings.pageLoad = Date.now() - navigated;
      note(`page load (navigation to the load event): ${seconds(timings.pageLoad)}`);
      const now = await waitForState(page, ["ready", "error", "no-webgpu", "running"], LOAD_TIMEOUT_MS);
      timings.settled = Date.now() - navigated;
      loaded = true;
      assert(log.errors.length === 0, `uncaught page errors: ${log.errors.join(" | ")}`);
      return `state "${now.state}", page load ${seconds(timings.pageLoad)}`;
    });
    await check("(a) the page has every element of the DOM contract", async () => {
      const missing = await page.evaluate(
        (ids) => ids.filter((id) => !document.getElementById(id)),
        CONTRACT_IDS,
      );
      assert(missing.length === 0, `missing ids: ${missing.map((id) => `#${id}`).join(", ")}`);
      const kinds = await page.evaluate(() => {
        const tag = (id) => document.getElementById(id)?.tagName.toLowerCase();
        return {
          progress: tag("load-progress"), imageChoice: tag("image-choice"), method: tag("method"),
          layer: tag("layer"), heatmap: tag("heatmap"),
          upload: document.getElementById("image-upload")?.type, budget: document.getElementById("budget")?.type,
          images: [...document.getElementById("image-choice").options].map((o) => o.value),
          methods: [...document.getElementById("method").options].map((o) => o.value),
        };
      });
      assert(kinds.progress === "progress", `#load-progress is a <${kinds.progress}>, not a <progress>`);
      assert(kinds.imageChoice === "select", `#image-choice is a <${kinds.imageChoice}>, not a <select>`);
      assert(kinds.method === "select", `#method is a <${kinds.method}>, not a <select>`);
      assert(kinds.layer === "select", `#layer is a <${kinds.layer}>, not a <select>`);
      assert(kinds.heatmap === "canvas", `#heatmap is a <${kinds.heatmap}>, not a <canvas>`);
      assert(kinds.upload === "file", `#image-upload is an input of type ${kinds.upload}, not file`);
      assert(kinds.budget === "range", `#budget is an input of type ${kinds.budget}, not range`);
      assert(kinds.images.length > 0, "#image-choice offers no image");
      const absent = METHODS.filter((m) => !kinds.methods.includes(m));
      assert(absent.length === 0, `#method lacks ${absent.join(", ")} (it has ${kinds.methods.join(", ")})`);
      return `${kinds.images.length} example images`;
    });
    if (!loaded) {
      for (const name of ["(b) the model loads", "(c) a question gets an answer", "(d) the budget slider"]) {
        skip(name, "the page did not load");
      }
      return { page, log, close, timings };
    }

    // (b) The model loads.
    const modelLoaded = await check("(b) the model loads: state \"ready\", #model-description filled", async () => {
      const now = await snapshot(page);
      assert(now.state === "ready", `state "${now.state}"; #status: "${now.status}"`);
      const info = await page.evaluate(() => {
        const budget = document.getElementById("budget");
        return {
          description: document.getElementById("model-description").textContent.trim(),
          adapter: document.getElementById("adapter").textContent.trim(),
          progress: document.getElementById("load-progress").value,
          progressMax: document.getElementById("load-progress").max,
          min: budget.min, max: budget.max, step: budget.step,
        };
      });
      assert(info.description.length > 0, "#model-description is empty");
      note(`model: ${info.description}`);
      note(`adapter: ${info.adapter}`);
      note(`model ready ${seconds(timings.settled)} after navigation`);
      if (info.progress !== info.progressMax) note(`#load-progress stays at ${info.progress} of ${info.progressMax}`);
      assert(info.min === "16", `#budget min is "${info.min}", not 16`);
      assert(info.step === "1", `#budget step is "${info.step}", not 1`);
      assert(Number(info.max) >= 16, `#budget max is "${info.max}"`);
      timings.visualTokens = Number(info.max);
      timings.ready = timings.settled;
      return `${seconds(timings.settled)} after navigation; #budget 16..${info.max}`;
    });
    if (!modelLoaded) {
      for (const name of ["(c) a question gets an answer", "(d) the budget slider"]) {
        skip(name, "the model did not load");
      }
      return { page, log, close, timings };
    }

    // (c) A question gets an answer.
    let first = null;
    const answered = await check("(c) a question gets an answer", async () => {
      await page.selectOption("#method", "v1.5");
      await page.fill("#question", QUESTION);
      timings.answer = await answerAfter(page, () => page.click("#ask"));
      first = await readouts(page);
      note(`time to answer (click to the answer shown): ${seconds(timings.answer)}`);
      note(`answer: ${JSON.stringify(first.answer)}; timings: ${first.timings}`);
      assert(typeof first.answer === "string", "#answer has no text");
      assert(first.timings, "#timings is empty");
      assert(first.flops && first.flops !== "–", `#flops-saved is "${first.flops}"`);
      integer(first.kept, "#kept-count");
      number(first.equivalent, "#equivalent-tokens");
      assert(first.layers.length > 0, "#layer has no options after the answer");
      const drawn = await page.evaluate(() => {
        const canvas = document.getElementById("heatmap");
        const blank = document.createElement("canvas");
        blank.width = canvas.width;
        blank.height = canvas.height;
        return canvas.width > 0 && canvas.height > 0 && canvas.toDataURL() !== blank.toDataURL();
      });
      assert(drawn, "#heatmap is blank");
      return `${seconds(timings.answer)}; ${first.kept} patches kept, ${first.equivalent} equivalent tokens`;
    });

    // (d) The slider re-runs the question, and a smaller budget keeps fewer patches.
    if (!answered) {
      skip("(d) the budget slider", "no answer to re-run");
    } else {
      await check("(d) moving #budget re-runs the question and changes the kept patches", async () => {
        const max = timings.visualTokens;
        let large = first;
        if (Number(first.budget) !== max) {
          const t = await answerAfter(page, () => setBudget(page, max));
          note(`re-run at budget ${max}: ${seconds(t)}`);
          large = await readouts(page);
        } else {
          note(`the first answer already ran at the largest budget (${max})`);
        }
        const t = await answerAfter(page, () => setBudget(page, SMALL_BUDGET));
        note(`re-run at budget ${SMALL_BUDGET}: ${seconds(t)}`);
        const small = await readouts(page);
        note(`budget ${max}: ${large.kept} kept, ${large.equivalent} equivalent; ` +
          `budget ${SMALL_BUDGET}: ${small.kept} kept, ${small.equivalent} equivalent`);
        assert(small.budgetValue?.includes(String(SMALL_BUDGET)),
          `#budget-value shows "${small.budgetValue}" for budget ${SMALL_BUDGET}`);
        const [keptLarge, keptSmall] = [integer(large.kept, "#kept-count"), integer(small.kept, "#kept-count")];
        const [eqLarge, eqSmall] = [number(large.equivalent, "#equivalent-tokens"),
          number(small.equivalent, "#equivalent-tokens")];
        assert(keptSmall < keptLarge, `budget ${SMALL_BUDGET} keeps ${keptSmall} patches, budget ${max} ${keptLarge}`);
        assert(eqSmall !== eqLarge, `#equivalent-tokens is ${eqSmall} at both budgets`);
        return `${keptLarge} → ${keptSmall} patches, ${eqLarge} → ${eqSmall} equivalent tokens`;
      });
    }
    await check("no uncaught page errors while answering", async () => {
      assert(log.errors.length === 0, log.errors.join(" | "));
    });

    // (g) The bundle went into the Cache API store named by its hash, and a second visit loads it from there.
    let cachedManifest = null;
    const cachedOk = await check("(g) a second visit loads the model from the browser cache", async () => {
      const manifest = await bundleManifest(page);
      const store = await expectOneStore(page, manifest);
      const started = Date.now();
      const downloads = await reloadAndRecordDownloads(page);
      assert(downloads.length === 0, `the reload downloaded ${downloads.join(", ")}`);
      cachedManifest = manifest;
      return `store ${store}; ready ${seconds(Date.now() - started)} after the reload, nothing downloaded`;
    });

    // (h) A bundle exported again (another seed) is downloaded on the next visit, into a new store.
    const reexport = "(h) a re-exported bundle is downloaded again, into a new store, the old one deleted";
    if (!REEXPORT) {
      skip(reexport, "E2E_REEXPORT is not set");
    } else if (!cachedOk) {
      skip(reexport, "the first bundle was not cached");
    } else {
      await check(reexport, async () => {
        execSync(REEXPORT, { stdio: ["ignore", "ignore", "pipe"] });
        const manifest = await bundleManifest(page);
        assert(manifest.bundle_sha256 !== cachedManifest.bundle_sha256,
          `the bundle hash is still ${manifest.bundle_sha256} after \`${REEXPORT}\``);
        const downloads = await reloadAndRecordDownloads(page);
        const missed = BUNDLE_FILES.filter((file) => !downloads.some((url) => url.endsWith(file)));
        assert(missed.length === 0, `the reload did not download ${missed.join(", ")} (it downloaded ` +
          `${JSON.stringify(downloads)})`);
        const store = await expectOneStore(page, manifest);
        return `store ${store}; ${downloads.length} files downloaded`;
      });
    }
  } catch (error) {
    notOk("the browser with WebGPU", error?.message ?? error);
  }
  return { page, log, close, timings };
}

/**
 * (e) A browser without the WebGPU flags, where `navigator.gpu` is removed (`removeGpu`) or offers no
 * adapter (its requestAdapter resolves to null, as on a machine whose GPU Chromium does not support).
 */
async function withoutWebGpu(name, removeGpu, screenshot) {
  let browser = null;
  try {
    browser = await launch([]);
    const page = browser.context.pages()[0] ?? (await browser.context.newPage());
    if (removeGpu) {
      await page.addInitScript(() => Object.defineProperty(navigator, "gpu", { value: undefined }));
    } else {
      await page.addInitScript(() => {
        if (navigator.gpu) Object.defineProperty(navigator.gpu, "requestAdapter", { value: async () => null });
      });
    }
    const log = watch(page);
    const passed = await check(name, async () => {
      const response = await page.goto(BASE_URL, { waitUntil: "load", timeout: 60_000 });
      assert(response && response.ok(), `HTTP ${response?.status()} for ${BASE_URL}`);
      const now = await waitForState(page, ["no-webgpu", "ready", "error"], 60_000);
      assert(now.state === "no-webgpu", `state "${now.state}"; #status: "${now.status}"`);
      const notice = await page.evaluate(() => {
        const el = document.getElementById("webgpu-missing");
        return el ? { hidden: el.hidden } : null;
      });
      assert(notice, "no #webgpu-missing");
      assert(!notice.hidden, "#webgpu-missing is hidden");
      assert(await page.isVisible("#webgpu-missing"), "#webgpu-missing is not visible");
      assert(log.errors.length === 0, `uncaught page errors: ${log.errors.join(" | ")}`);
    });
    if (!passed) printDiagnostics(log);
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  } catch (error) {
    notOk(name, error?.message ?? error);
  } finally {
    await browser?.close();
  }
}

async function main() {
  if (!existsSync(CHROMIUM)) {
    notOk("a Chromium binary", `${CHROMIUM} does not exist (set CHROMIUM)`);
    return;
  }
  note(`page: ${BASE_URL}`);
  const started = Date.now();
  let main = null;
  try {
    main = await withWebGpu();
    // (f) The screenshot, whatever happened above: it shows what went wrong.
    await check("(f) a full-page screenshot", async () => {
      mkdirSync(dirname(SCREENSHOT), { recursive: true });
      await main.page.screenshot({ path: SCREENSHOT, fullPage: true });
      return SCREENSHOT;
    });
    if (failures > 0) printDiagnostics(main.log);
  } catch (error) {
    notOk("the browser with WebGPU", error?.message ?? error);
  } finally {
    await main?.close();
  }
  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await withoutWebGpu("(e) without navigator.gpu: state \"no-webgpu\", #webgpu-missing visible", true,
    withSuffix(SCREENSHOT, "-no-webgpu"));
  await withoutWebGpu("(e) with no WebGPU adapter: state \"no-webgpu\", #webgpu-missing visible", false, null);
  const t = main?.timings ?? {};
  note(`summary: page load ${t.pageLoad === undefined ? "–" : seconds(t.pageLoad)}, model ready ` +
    `${t.ready === undefined ? "–" : seconds(t.ready)}, time to answer ` +
    `${t.answer === undefined ? "–" : seconds(t.answer)}; whole run ${seconds(Date.now() - started)}`);
}

await main();
console.log(failures === 0 ? "# all checks passed" : `# ${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
