// The demo page: loads sparsevlm-mini once (cached by the browser), then answers questions about an image
// with the chosen pruning method and budget, and shows which patches the model kept.
//
// State for tests and styles: document.body.dataset.state is loading | ready | running | error |
// no-webgpu, and document.body.dataset.runs counts completed answers.

import { drawOverlay, drawSquare } from "./heatmap.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const modelBase = new URL(params.get("model") ?? "model", location.href).href;
const MAX_NEW_TOKENS = 12;

let session = null;
let imageBytes = null;
let imageBitmap = null;
let asked = false;
let busy = false;
let again = false;
let lastReports = [null, null];

function setState(state) {
  document.body.dataset.state = state;
  $("ask").disabled = state !== "ready" && state !== "running";
}

function status(text) {
  $("status").textContent = text;
}

/** Resolves with the wasm module's exports once trunk's loader has started it. */
function wasmBindings() {
  return new Promise((resolve) => {
    if (window.wasmBindings) return resolve(window.wasmBindings);
    addEventListener("TrunkApplicationStarted", () => resolve(window.wasmBindings), { once: true });
  });
}

async function hasWebGpu() {
  if (!navigator.gpu) return false;
  try {
    return (await navigator.gpu.requestAdapter()) !== null;
  } catch {
    return false;
  }
}

async function setImage(bytes) {
  const bitmap = await createImageBitmap(new Blob([bytes]));
  imageBytes = bytes;
  imageBitmap = bitmap;
  // A new image invalidates the overlays until the question runs on it.
  drawSquare($("heatmap"), bitmap);
  drawSquare($("heatmap-b"), bitmap);
}

/** Shows the out-of-domain warning under the answer unless the image is like the training data. */
function markDomain(inDomain) {
  $("domain-warning").hidden = inDomain;
}

async function chooseExample() {
  const url = $("image-choice").value;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  await setImage(new Uint8Array(await response.arrayBuffer()));
  // The projector is trained on easy-VQA and generated scenes only.
  markDomain(/\/(scene|easy-vqa)-[^/]*$/.test(url));
}

function formatFlops(savings) {
  const t = (x) => (x / 1e9).toFixed(2);
  return `${t(savings.prefill_flops)} GFLOP vs ${t(savings.dense_prefill_flops)} dense ` +
    `(${savings.flops_saved_percent.toFixed(1)}% saved)`;
}

function fillLayers(report) {
  const select = $("layer");
  const previous = select.value;
  select.replaceChildren(new Option("the last pruning layer", "final"));
  report.layers.forEach((layer, i) => {
    select.add(new Option(`${layer.layer} (${layer.visual_in} → ${layer.visual_out} visual tokens)`, String(i)));
  });
  select.value = [...select.options].some((o) => o.value === previous) ? previous : "final";
}

function show(report, suffix) {
  const id = (name) => $(name + suffix);
  id("method-label").textContent = report.method;
  id("answer").textContent = report.answer;
  id("kept-count").textContent = String(report.surviving.length);
  id("equivalent-tokens").textContent = report.savings.equivalent_tokens.toFixed(1);
  id("flops-saved").textContent = formatFlops(report.savings);
  const t = report.timings;
  id("timings").textContent = `vision ${t.vision_ms.toFixed(0)} ms · prefill ${t.prefill_ms.toFixed(0)} ms · ` +
    `decode ${t.tokens_per_s.toFixed(1)} tokens/s` + (report.skipped ? ` · not pruned: ${report.skipped}` : "");
  const canvas = suffix ? $("heatmap-b") : $("heatmap");
  drawSquare(canvas, imageBitmap);
  drawOverlay(canvas, report, $("layer").value);
}

async function runOne(method, suffix) {
  const answer = $("answer" + suffix);
  answer.textContent = "";
  const budget = Number($("budget").value);
  const report = await session.ask(imageBytes, $("question").value, method, budget, MAX_NEW_TOKENS, (delta) => {
    answer.textContent += delta;
  });
  return report;
}

/** Asks the question; a request made while one runs is remembered and run next (the latest wins). */
async function ask() {
  if (!session || !imageBytes) return;
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  asked = true;
  setState("running");
  status("Thinking…");
  try {
    const reportA = await runOne($("method").value, "");
    lastReports[0] = reportA;
    fillLayers(reportA);
    show(reportA, "");
    if ($("compare").checked) {
      const reportB = await runOne($("method-b").value, "-b");
      lastReports[1] = reportB;
      show(reportB, "-b");
    }
    document.body.dataset.runs = String(Number(document.body.dataset.runs) + 1);
    status("Ready.");
    setState("ready");
  } catch (error) {
    status(`The question failed: ${error.message ?? error}`);
    setState("ready");
  } finally {
    busy = false;
  }
  if (again) {
    again = false;
    ask();
  }
}

function wireControls() {
  $("budget").addEventListener("input", () => {
    $("budget-value").textContent = $("budget").value;
  });
  $("budget").addEventListener("change", () => asked && ask());
  $("method").addEventListener("change", () => asked && ask());
  $("method-b").addEventListener("change", () => asked && $("compare").checked && ask());
  $("compare").addEventListener("change", () => {
    $("panel-b").hidden = !$("compare").checked;
    if (asked) ask();
  });
  $("layer").addEventListener("change", () => {
    if (lastReports[0]) show(lastReports[0], "");
    if (lastReports[1] && $("compare").checked) show(lastReports[1], "-b");
  });
  $("ask").addEventListener("click", ask);
  $("question").addEventListener("keydown", (e) => e.key === "Enter" && ask());
  for (const button of $("suggestions").querySelectorAll("button")) {
    button.addEventListener("click", () => {
      $("question").value = button.textContent;
      ask();
    });
  }
  $("image-choice").addEventListener("change", async () => {
    await chooseExample();
    if (asked) ask();
  });
  $("image-upload").addEventListener("change", async () => {
    const file = $("image-upload").files[0];
    if (!file) return;
    await setImage(new Uint8Array(await file.arrayBuffer()));
    markDomain(false);
    if (asked) ask();
  });
}

async function main() {
  setState("loading");
  wireControls();
  if (!(await hasWebGpu())) {
    $("webgpu-missing").hidden = false;
    $("loader").hidden = true;
    setState("no-webgpu");
    return;
  }
  try {
    await chooseExample();
    const { Session } = await wasmBindings();
    const started = performance.now();
    session = await Session.load(modelBase, (fraction, label) => {
      $("load-progress").value = fraction;
      status(label);
    });
    $("load-progress").value = 1;
    $("load-box").hidden = true;
    $("model-description").textContent = session.description();
    $("adapter").textContent = session.adapter();
    const budget = $("budget");
    budget.max = String(session.visualTokens());
    budget.min = String(Math.min(16, session.visualTokens()));
    if (Number(budget.value) > session.visualTokens()) budget.value = budget.max;
    $("budget-value").textContent = budget.value;
    status(`Model loaded in ${((performance.now() - started) / 1000).toFixed(1)} s. Ask a question.`);
    setState("ready");
  } catch (error) {
    status(`Loading failed: ${error.message ?? error}`);
    setState("error");
  }
}

main();
