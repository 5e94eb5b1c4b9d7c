// Draws the image as the model saw it (padded to a square with the mean colour, as LLaVA-1.5's
// expand2square does) with the patch grid of one pruning layer over it: kept patches tinted by their
// significance score, pruned patches dimmed, patches recycled into merged tokens outlined.

/** ImageNet mean colour, the padding the vision tower's preprocessing uses. */
const PAD = "rgb(123, 116, 103)";

/** Draws `image` (an ImageBitmap) centred on a square `canvas`, padded like expand2square. */
export function drawSquare(canvas, image) {
  const ctx = canvas.getContext("2d");
  const side = canvas.width;
  ctx.fillStyle = PAD;
  ctx.fillRect(0, 0, side, side);
  const scale = side / Math.max(image.width, image.height);
  const w = image.width * scale;
  const h = image.height * scale;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(image, (side - w) / 2, (side - h) / 2, w, h);
}

/**
 * The per-patch state of `report` after the pruning layer at index `layerIndex` (or the last one when
 * `layerIndex` is "final"): `{status: Array<"kept"|"merged"|"pruned">, score: Array<number in [0, 1]>}`.
 */
export function patchStates(report, layerIndex) {
  const n = report.grid * report.grid;
  const status = new Array(n).fill(report.layers.length ? "pruned" : "kept");
  const score = new Array(n).fill(0);
  if (!report.layers.length) return { status, score };
  const index = layerIndex === "final" ? report.layers.length - 1 : Number(layerIndex);
  const layer = report.layers[index];
  let max = 0;
  layer.patches_in.forEach((patch, slot) => {
    if (patch !== null) max = Math.max(max, layer.scores[slot]);
  });
  layer.patches_in.forEach((patch, slot) => {
    if (patch !== null && max > 0) score[patch] = layer.scores[slot] / max;
  });
  for (const group of layer.merged) for (const patch of group) status[patch] = "merged";
  for (const patch of layer.kept) status[patch] = "kept";
  return { status, score };
}

/** Draws the overlay of `patchStates(report, layerIndex)` over the square already on `canvas`. */
export function drawOverlay(canvas, report, layerIndex) {
  const ctx = canvas.getContext("2d");
  const cell = canvas.width / report.grid;
  const { status, score } = patchStates(report, layerIndex);
  status.forEach((s, patch) => {
    const x = (patch % report.grid) * cell;
    const y = Math.floor(patch / report.grid) * cell;
    if (s === "pruned") {
      ctx.fillStyle = "rgba(20, 20, 20, 0.72)";
      ctx.fillRect(x, y, cell, cell);
    } else if (s === "kept") {
      ctx.fillStyle = `rgba(255, 110, 10, ${0.08 + 0.5 * score[patch]})`;
      ctx.fillRect(x, y, cell, cell);
    } else {
      ctx.fillStyle = "rgba(20, 20, 20, 0.45)";
      ctx.fillRect(x, y, cell, cell);
      ctx.strokeStyle = "rgb(0, 170, 210)";
      ctx.setLineDash([3, 2]);
      ctx.lineWidth = 1.5;
      ctx.strokeRect(x + 1, y + 1, cell - 2, cell - 2);
      ctx.setLineDash([]);
    }
  });
}
