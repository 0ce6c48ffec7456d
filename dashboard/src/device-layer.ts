/**
 * Every device marker on one canvas, drawn by this layer itself: no Leaflet object per device.
 * With 50,000 devices, one L.CircleMarker each cost seconds to add and a full path walk per
 * redraw (docs/BENCHMARKS.md, "Map"). Here a device is a slot in typed arrays (position projected
 * once, style bytes, visibility), slots in draw order (tanks over poles over cameras); a change
 * marks its slot, and the next animation frame draws what changed.
 *
 * Two painters:
 *   - WebGL, on a GPU: the whole set is one `POINTS` draw (shapes, outlines and anti-aliasing
 *     from the fragment shader); a status change re-sends 12 style bytes per device, a pan or zoom
 *     changes two uniforms. About a millisecond for 50,000 devices.
 *   - canvas 2D, where WebGL is missing or runs in software (SwiftShader, llvmpipe: the headless
 *     Chromium of our tests and benchmarks, thin clients): 50,000 sprite blits cost 0.3–1 s there,
 *     so full pictures are drawn off screen a slice per frame and swapped in, and a status change
 *     repaints only its marker's rectangle (Canvas2dPainter).
 *   The first picture is always 2D; on a GPU, WebGL takes over once it is up (#probeWebGl).
 *
 * Hit-testing and the 2D repaints use a grid of 32 px cells over the devices' canvas positions,
 * rebuilt only when the view changes, so a click, a hover or a repaint looks at a handful of devices.
 *
 * Positioning follows Leaflet's own renderers (L.Renderer in leaflet 1.9): the canvas covers the
 * view plus `padding` on each side, moves with the map pane while panning, is scaled by a CSS
 * transform during zoom animations, and is redrawn on `moveend`. The two private Leaflet members
 * used for that are named in `MapInternals`; re-check them on a Leaflet upgrade.
 */
import * as L from 'leaflet';

export type MarkerShape = 'circle' | 'square' | 'diamond';
const SHAPE_CODE: Record<MarkerShape, number> = { circle: 0, square: 1, diamond: 2 };

export interface MarkerLook {
  shape: MarkerShape;
  /** CSS px at full size (zoom >= FULL_SIZE_ZOOM). */
  radius: number;
  fillColor: string;
  fillOpacity: number;
  color: string;
  weight: number;
}

/**
 * The devices as the layer needs them, one column per field, row k the same device: display
 * position (WGS-84, or GCJ-02 over GCJ-02 tiles), draw rank (higher is drawn later, on top), look
 * (pass the same object for the same look: looks are matched by identity first) and whether the
 * filter shows it (1) or not (0). Columns, not an object per device: 50,000 of those were most
 * of a snapshot's garbage.
 */
export interface LayerDevices {
  ids: readonly string[];
  lat: Float64Array;
  lng: Float64Array;
  rank: Uint8Array;
  looks: readonly MarkerLook[];
  visible: Uint8Array;
}

/** Web Mercator (EPSG:3857) at zoom 0 in Leaflet's 256 px world: what `L.CRS.EPSG3857.latLngToPoint(ll, 0)` gives. */
const MAX_LATITUDE = 85.0511287798;
function worldX(lng: number): number {
  return 256 * (0.5 + lng / 360);
}
function worldY(lat: number): number {
  const phi = (Math.max(-MAX_LATITUDE, Math.min(MAX_LATITUDE, lat)) * Math.PI) / 180;
  return 256 * (0.5 - Math.log(Math.tan(Math.PI / 4 + phi / 2)) / (2 * Math.PI));
}

export interface LayerStats {
  /** 'webgl' on a GPU; 'canvas2d' where WebGL is missing or in software. */
  renderer: 'webgl' | 'canvas2d' | 'none';
  /** Devices the layer holds. */
  devices: number;
  /** Devices the last completed draw covered (culled or not): equals `devices` once drawn. */
  drawn: number;
  /** Devices passing the filter. */
  visible: number;
  /** Animation frames the layer drew in (a 2D picture may take several). */
  draws: number;
  /** Main-thread time of the last frame's drawing (WebGL: issuing it; the GPU rasterises). */
  lastDrawMs: number;
  maxDrawMs: number;
}

interface MapInternals {
  _zoomAnimated: boolean;
  _getNewPixelOrigin(center: L.LatLng, zoom: number): L.Point;
}

const CELL = 32;
/** Below this zoom markers shrink, so a dense district stays a readable pattern, not a blot. */
const FULL_SIZE_ZOOM = 13;
/** Bytes per device in the style buffer: fill RGBA, outline RGBA, radius×10, weight×10, shape, visible. */
const STYLE_BYTES = 12;
const RING = { minRadius: 10, gap: 6, width: 2.5 } as const;

/**
 * Marker size for a view: smaller below FULL_SIZE_ZOOM, and smaller when tens of thousands of
 * devices are in view (a district at city scale), so the map stays a readable pattern. In steps,
 * so that panning does not make markers breathe.
 */
function sizeScale(zoom: number, inView: number): number {
  const byZoom = Math.max(0.5, Math.min(1, 1 - (FULL_SIZE_ZOOM - zoom) * 0.2));
  const byCount = inView <= 4000 ? 1 : inView <= 12_000 ? 0.8 : inView <= 30_000 ? 0.65 : 0.55;
  return Math.min(byZoom, byCount);
}

const lookKey = (l: MarkerLook): string => `${l.shape}|${l.radius}|${l.fillColor}|${l.fillOpacity}|${l.color}|${l.weight}`;

/** '#rgb' / '#rrggbb' to bytes (the looks are ours, in map.ts); anything else is grey. */
function rgb(hex: string): [number, number, number] {
  const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(hex);
  if (!m) return [128, 128, 128];
  const s = m[1]!.length === 3 ? [...m[1]!].map((c) => c + c).join('') : m[1]!;
  return [parseInt(s.slice(0, 2), 16), parseInt(s.slice(2, 4), 16), parseInt(s.slice(4, 6), 16)];
}

function lookBytes(look: MarkerLook): Uint8Array {
  const [fr, fg, fb] = rgb(look.fillColor);
  const [sr, sg, sb] = rgb(look.color);
  const clamp = (v: number) => Math.max(0, Math.min(255, Math.round(v)));
  return Uint8Array.of(fr, fg, fb, clamp(look.fillOpacity * 255), sr, sg, sb, 255, clamp(look.radius * 10), clamp(look.weight * 10), SHAPE_CODE[look.shape], 1);
}

/** Outline width at a size scale: thinner on small markers, or a dense district turns white. */
function outline(look: MarkerLook, scale: number): number {
  return look.weight * Math.max(0.6, scale);
}

/** The marker's outer radius (shape plus outline) and its hit radius, in CSS px at a size scale. */
function markerHalf(look: MarkerLook, scale: number): { half: number; hit: number } {
  const r = Math.max(1, look.radius * scale);
  const w = outline(look, scale);
  return { half: Math.ceil(r + w + 1), hit: r + w / 2 };
}

// ---- WebGL shaders ------------------------------------------------------------------------------

const VERTEX_SHADER = `
attribute vec2 a_pos;
attribute vec4 a_fill;
attribute vec4 a_stroke;
attribute vec4 a_params;
uniform vec2 u_translate;
uniform float u_world;
uniform vec2 u_size;
uniform float u_dpr;
uniform float u_scale;
uniform float u_ring;
varying vec4 v_fill;
varying vec4 v_stroke;
varying vec4 v_shape; // radius, half outline width, shape code, half size (all CSS px)
varying float v_ring;
void main() {
  if (a_params.w < 0.5 && u_ring < 0.5) {
    gl_Position = vec4(2.0, 2.0, 0.0, 1.0);
    gl_PointSize = 0.0;
    return;
  }
  vec2 p = a_pos * u_world + u_translate;
  float r = max(1.0, a_params.x / 10.0 * u_scale);
  float w = a_params.y / 10.0 * max(0.6, u_scale);
  float halfSize = u_ring > 0.5 ? max(${RING.minRadius.toFixed(1)}, r + w / 2.0 + ${RING.gap.toFixed(1)}) + 2.0 : r + w + 1.0;
  gl_Position = vec4(p.x / u_size.x * 2.0 - 1.0, 1.0 - p.y / u_size.y * 2.0, 0.0, 1.0);
  gl_PointSize = 2.0 * halfSize * u_dpr;
  v_fill = a_fill;
  v_stroke = a_stroke;
  v_shape = vec4(r, w / 2.0, a_params.z, halfSize);
  v_ring = u_ring;
}
`;

const FRAGMENT_SHADER = `
precision mediump float;
varying vec4 v_fill;
varying vec4 v_stroke;
varying vec4 v_shape;
varying float v_ring;
void main() {
  vec2 q = (gl_PointCoord - 0.5) * 2.0 * v_shape.w;
  if (v_ring > 0.5) {
    float d = abs(length(q) - (v_shape.w - 2.0)) - ${(RING.width / 2).toFixed(2)};
    float a = clamp(0.5 - d, 0.0, 1.0);
    if (a <= 0.0) discard;
    gl_FragColor = vec4(a);
    return;
  }
  float r = v_shape.x;
  float dist;
  if (v_shape.z < 0.5) {
    dist = length(q) - r;
  } else if (v_shape.z < 1.5) {
    vec2 d = abs(q) - vec2(r * 0.85);
    dist = length(max(d, 0.0)) + min(max(d.x, d.y), 0.0);
  } else {
    dist = (abs(q.x) + abs(q.y) - r) * 0.70710678;
  }
  float hw = v_shape.y;
  float outer = clamp(0.5 - (dist - hw), 0.0, 1.0);
  float inner = clamp(0.5 - (dist + hw), 0.0, 1.0);
  float strokeCover = max(outer - inner, 0.0);
  vec4 fill = vec4(v_fill.rgb * v_fill.a, v_fill.a) * inner;
  vec4 stroke = vec4(v_stroke.rgb * v_stroke.a, v_stroke.a) * strokeCover;
  vec4 color = stroke + fill * (1.0 - stroke.a);
  if (color.a <= 0.0) discard;
  gl_FragColor = color;
}
`;

/** Where the canvas sits and how world positions map onto it (canvas-local CSS px = rel * world + t). */
interface Placement {
  topLeft: L.Point;
  zoom: number;
  center: L.LatLng;
  width: number;
  height: number;
  dpr: number;
  world: number;
  tx: number;
  ty: number;
  /** Marker size scale for the zoom. */
  scale: number;
}

/** The layer's data as the painters read it. Slot order is draw order. */
interface LayerData {
  readonly count: number;
  readonly rel: Float32Array;
  readonly styles: Uint8Array;
  readonly lookOf: Uint16Array;
  readonly looks: readonly MarkerLook[];
  readonly visible: Uint8Array;
  /** Draw rank per slot (kind order); slots are sorted by it. */
  readonly rankOf: Uint8Array;
  readonly selected: number;
  /** Slots whose position is near the rectangle (canvas CSS px, current placement), unordered. */
  visitNear(x0: number, y0: number, x1: number, y1: number, margin: number, visit: (slot: number) => void): void;
  /** Those of them numbered `minSlot` or more (drawn later), looking at no others. */
  visitAbove(x0: number, y0: number, x1: number, y1: number, margin: number, minSlot: number, visit: (slot: number) => void): void;
  /** The first slot after those of draw rank `rank` (an index into the ranks, as in `rankOf`). */
  rankEnd(rank: number): number;
}

interface Painter {
  readonly kind: 'webgl' | 'canvas2d';
  /** The canvas on screen (the 2D painter swaps two). */
  readonly element: HTMLCanvasElement;
  /** False once the context is gone (the layer then falls back). */
  readonly ok: boolean;
  /** Placement of the picture on screen (zoom animations transform from it); null before the first. */
  readonly shown: Placement | null;
  /** Work left for the next frames. */
  readonly busy: boolean;
  /** Draws the whole set at a placement (a view change or new data); may finish over several frames. */
  full(p: Placement): void;
  /** Slots restyled or shown/hidden, and the selection before and after if it changed. */
  update(slots: ReadonlySet<number>, selection: { from: number; to: number } | null): void;
  /** One animation frame's share of the work. */
  tick(): void;
}

const ringRadius = (look: MarkerLook, scale: number) => Math.max(RING.minRadius, markerHalf(look, scale).hit + RING.gap);

// ---- WebGL painter (hardware) -------------------------------------------------------------------

class WebGlPainter implements Painter {
  readonly kind = 'webgl' as const;
  readonly #canvas: HTMLCanvasElement;
  readonly #gl: WebGLRenderingContext;
  readonly #data: LayerData;
  readonly #onComplete: () => void;
  readonly #posBuffer: WebGLBuffer;
  readonly #styleBuffer: WebGLBuffer;
  readonly #u: Record<'translate' | 'world' | 'size' | 'dpr' | 'scale' | 'ring', WebGLUniformLocation | null>;
  #lost = false;
  #shown: Placement | null = null;
  #uploadedCount = -1;
  #positionsStale = true;

  /**
   * Null where WebGL is missing or runs in software (SwiftShader, llvmpipe): drawing 50,000 points
   * there costs 0.1–0.3 s of raster per frame, which the canvas 2D painter's incremental repaints
   * avoid. `allowSoftware` is for tests of this painter on machines without a GPU.
   */
  static create(canvas: HTMLCanvasElement, data: LayerData, onComplete: () => void, onLost: () => void, allowSoftware: boolean): WebGlPainter | null {
    let gl: WebGLRenderingContext | null = null;
    try {
      gl = canvas.getContext('webgl', { alpha: true, premultipliedAlpha: true, antialias: false, depth: false, stencil: false, preserveDrawingBuffer: false, failIfMajorPerformanceCaveat: !allowSoftware });
    } catch {
      gl = null;
    }
    if (!gl) return null;
    if (!allowSoftware) {
      const info = gl.getExtension('WEBGL_debug_renderer_info');
      const renderer = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : '';
      if (/swiftshader|llvmpipe|softpipe|software|basic render/i.test(renderer)) {
        gl.getExtension('WEBGL_lose_context')?.loseContext();
        return null;
      }
    }
    try {
      return new WebGlPainter(canvas, gl, data, onComplete, onLost);
    } catch (err) {
      console.warn('WebGL device layer failed to start; drawing with canvas 2D', err);
      return null;
    }
  }

  private constructor(canvas: HTMLCanvasElement, gl: WebGLRenderingContext, data: LayerData, onComplete: () => void, onLost: () => void) {
    this.#canvas = canvas;
    this.#gl = gl;
    this.#data = data;
    this.#onComplete = onComplete;
    const compile = (type: number, source: string) => {
      const shader = gl.createShader(type);
      if (!shader) throw new Error('createShader failed');
      gl.shaderSource(shader, source);
      gl.compileShader(shader);
      if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(`shader: ${gl.getShaderInfoLog(shader) ?? ''}`);
      return shader;
    };
    const program = gl.createProgram();
    if (!program) throw new Error('createProgram failed');
    gl.attachShader(program, compile(gl.VERTEX_SHADER, VERTEX_SHADER));
    gl.attachShader(program, compile(gl.FRAGMENT_SHADER, FRAGMENT_SHADER));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(`program: ${gl.getProgramInfoLog(program) ?? ''}`);
    const pos = gl.createBuffer();
    const style = gl.createBuffer();
    if (!pos || !style) throw new Error('createBuffer failed');
    this.#posBuffer = pos;
    this.#styleBuffer = style;
    gl.useProgram(program);
    const attr = (name: string) => gl.getAttribLocation(program, name);
    gl.bindBuffer(gl.ARRAY_BUFFER, pos);
    gl.enableVertexAttribArray(attr('a_pos'));
    gl.vertexAttribPointer(attr('a_pos'), 2, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, style);
    for (const [name, offset, normalized] of [
      ['a_fill', 0, true],
      ['a_stroke', 4, true],
      ['a_params', 8, false],
    ] as const) {
      gl.enableVertexAttribArray(attr(name));
      gl.vertexAttribPointer(attr(name), 4, gl.UNSIGNED_BYTE, normalized, STYLE_BYTES, offset);
    }
    const uniform = (name: string) => gl.getUniformLocation(program, name);
    this.#u = { translate: uniform('u_translate'), world: uniform('u_world'), size: uniform('u_size'), dpr: uniform('u_dpr'), scale: uniform('u_scale'), ring: uniform('u_ring') };
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    canvas.addEventListener('webglcontextlost', (e) => {
      e.preventDefault();
      this.#lost = true;
      onLost();
    });
  }

  get ok(): boolean {
    return !this.#lost;
  }

  get element(): HTMLCanvasElement {
    return this.#canvas;
  }

  get shown(): Placement | null {
    return this.#shown;
  }

  readonly busy = false;

  full(p: Placement): void {
    placeCanvas(this.#canvas, p);
    this.#shown = p;
    this.#positionsStale = true;
    this.#draw();
  }

  update(): void {
    this.#draw();
  }

  tick(): void {
    // Every draw is complete at once.
  }

  #draw(): void {
    const p = this.#shown;
    if (this.#lost || !p) return;
    const gl = this.#gl;
    const d = this.#data;
    if (this.#positionsStale || this.#uploadedCount !== d.count) {
      gl.bindBuffer(gl.ARRAY_BUFFER, this.#posBuffer);
      gl.bufferData(gl.ARRAY_BUFFER, d.rel, gl.STATIC_DRAW);
      this.#positionsStale = false;
    }
    // 12 bytes a device: re-sent whole; 600 kB for 50,000 is less work than tracking ranges.
    gl.bindBuffer(gl.ARRAY_BUFFER, this.#styleBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, d.styles, gl.DYNAMIC_DRAW);
    this.#uploadedCount = d.count;
    gl.viewport(0, 0, this.#canvas.width, this.#canvas.height);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (d.count > 0) {
      gl.uniform2f(this.#u.translate, p.tx, p.ty);
      gl.uniform1f(this.#u.world, p.world);
      gl.uniform2f(this.#u.size, p.width, p.height);
      gl.uniform1f(this.#u.dpr, p.dpr);
      gl.uniform1f(this.#u.scale, p.scale);
      gl.uniform1f(this.#u.ring, 0);
      gl.drawArrays(gl.POINTS, 0, d.count);
      const sel = d.selected;
      if (sel >= 0) {
        // The selected device again on top (even when filtered out), then its ring.
        const at = sel * STYLE_BYTES + 11;
        const hidden = d.styles[at] === 0;
        if (hidden) {
          d.styles[at] = 1;
          gl.bufferSubData(gl.ARRAY_BUFFER, sel * STYLE_BYTES, d.styles.subarray(sel * STYLE_BYTES, (sel + 1) * STYLE_BYTES));
          d.styles[at] = 0;
        }
        gl.drawArrays(gl.POINTS, sel, 1);
        gl.uniform1f(this.#u.ring, 1);
        gl.drawArrays(gl.POINTS, sel, 1);
      }
    }
    this.#onComplete();
  }
}

/** The same view: a picture drawn (or being drawn) for one is right for the other. */
function samePlacement(a: Placement, b: Placement): boolean {
  return a.topLeft.equals(b.topLeft) && a.zoom === b.zoom && a.width === b.width && a.height === b.height && a.dpr === b.dpr && a.tx === b.tx && a.ty === b.ty && a.scale === b.scale;
}

/** Puts a canvas at a placement: layer position (no zoom transform), size in device and CSS px. */
function placeCanvas(canvas: HTMLCanvasElement, p: Placement): void {
  L.DomUtil.setPosition(canvas, p.topLeft);
  const w = Math.round(p.width * p.dpr);
  const h = Math.round(p.height * p.dpr);
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
    canvas.style.width = `${p.width}px`;
    canvas.style.height = `${p.height}px`;
  }
}

// ---- canvas 2D painter: progressive full pictures, incremental repaints --------------------------

interface Sprite {
  canvas: HTMLCanvasElement;
  half: number;
  /** Device px: side, and the opaque pixels as (row * side + column) with their RGBA words. */
  side: number;
  offsets: Int32Array;
  colors: Uint32Array;
}

/** The map's background (styles.css `.map.gs-no-tiles`), which the 2D sprites are blended onto. */
const MAP_BACKGROUND = '#0b151c';

function tracePath(ctx: CanvasRenderingContext2D, shape: MarkerShape, c: number, r: number): void {
  ctx.beginPath();
  if (shape === 'circle') {
    ctx.arc(c, c, r, 0, Math.PI * 2);
  } else if (shape === 'square') {
    const s = r * 0.85;
    ctx.rect(c - s, c - s, 2 * s, 2 * s);
  } else {
    ctx.moveTo(c, c - r);
    ctx.lineTo(c + r, c);
    ctx.lineTo(c, c + r);
    ctx.lineTo(c - r, c);
    ctx.closePath();
  }
}

/**
 * A marker as an image with hard edges: every pixel the shape covers at least half is opaque (its
 * anti-aliased colour blended onto the map background), every other pixel is empty. All looks of
 * a kind (same shape, radius and outline width) then cover exactly the same pixels, so a changed
 * marker is redrawn over the old one without clearing anything.
 */
function renderSprite(look: MarkerLook, scale: number, dpr: number): Sprite {
  const r = Math.max(1, look.radius * scale);
  const { half } = markerHalf(look, scale);
  const size = Math.ceil(2 * half * dpr);
  const layer = (draw: (ctx: CanvasRenderingContext2D) => void) => {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = size;
    // Read back below: a software canvas (a GPU one would stall on every readback).
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    if (ctx) {
      ctx.scale(dpr, dpr);
      draw(ctx);
    }
    return { canvas, ctx };
  };
  const styled = layer((ctx) => {
    ctx.fillStyle = MAP_BACKGROUND;
    ctx.fillRect(0, 0, 2 * half, 2 * half);
    tracePath(ctx, look.shape, half, r);
    ctx.globalAlpha = look.fillOpacity;
    ctx.fillStyle = look.fillColor;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.lineWidth = outline(look, scale);
    ctx.strokeStyle = look.color;
    ctx.stroke();
  });
  const coverage = layer((ctx) => {
    tracePath(ctx, look.shape, half, r);
    ctx.fillStyle = '#fff';
    ctx.fill();
    ctx.lineWidth = outline(look, scale);
    ctx.strokeStyle = '#fff';
    ctx.stroke();
  });
  const offsets: number[] = [];
  const colors: number[] = [];
  if (styled.ctx && coverage.ctx) {
    const pixels = styled.ctx.getImageData(0, 0, size, size);
    const mask = coverage.ctx.getImageData(0, 0, size, size).data;
    for (let k = 3; k < pixels.data.length; k += 4) pixels.data[k] = mask[k]! >= 128 ? 255 : 0;
    styled.ctx.putImageData(pixels, 0, 0);
    // The same pixels as words, for pictures written straight into an ImageData (Canvas2dPainter).
    const words = new Uint32Array(pixels.data.buffer);
    for (let k = 0; k < words.length; k++) {
      if (pixels.data[4 * k + 3] === 255) {
        offsets.push(k);
        colors.push(words[k]!);
      }
    }
  }
  return { canvas: styled.canvas, half, side: size, offsets: Int32Array.from(offsets), colors: Uint32Array.from(colors) };
}

/**
 * Main-thread time per animation frame the painter may use. Repaints get more than a picture's
 * slices: every frame that changes the canvas costs the compositor a full upload of it, so an
 * update batch is better repainted in one or two frames than spread over ten.
 */
const PICTURE_BUDGET_MS = 8;
const REPAINT_BUDGET_MS = 16;
const FIRST_SLICE_MS = 12;
/** The first picture (nothing on screen yet): most of each frame, there is nothing to keep smooth. */
const FIRST_PICTURE_BUDGET_MS = 30;
/** Rows per putImageData slice of a picture. */
const PUT_ROWS = 96;

/**
 * Software rendering at district scale: a full picture (50,000 sprites) costs 0.3–1 s of
 * `drawImage` here, so it is drawn into an off-screen canvas a slice per frame while the previous
 * picture stays on screen (moved and scaled with the map), then swapped in. A status change
 * repaints only the rectangle of that marker: clear it, then redraw, clipped, every marker that
 * touches it in draw order (the layer's grid finds them), so the result is exactly what a full
 * redraw would show there. Changes that arrive while a picture is being drawn are repainted after
 * the swap.
 */
class Canvas2dPainter implements Painter {
  readonly kind = 'canvas2d' as const;
  readonly ok = true;
  /** On screen, and the one the next picture is drawn in; swapped when that picture is done. */
  #front: HTMLCanvasElement;
  #back: HTMLCanvasElement;
  #frontCtx: CanvasRenderingContext2D | null;
  #backCtx: CanvasRenderingContext2D | null;
  readonly #data: LayerData;
  readonly #onComplete: () => void;
  #sprites: Sprite[] = [];
  #spriteKey = '';
  #shown: Placement | null = null;
  /**
   * The picture being made: markers written into `#pixels` (a slot range per slice), then copied
   * to the back canvas (a band of rows per slice), then the selection, then the swap.
   */
  #job: { p: Placement; ctx: CanvasRenderingContext2D; next: number; row: number; drawnLook: Uint16Array; drawnVisible: Uint8Array } | null = null;
  #pixels: ImageData | null = null;
  #words = new Uint32Array(0);
  /** What the on-screen picture shows per slot: its look (for the old marker's size) and whether drawn. */
  #drawnLook: Uint16Array = new Uint16Array(0);
  #drawnVisible: Uint8Array = new Uint8Array(0);
  readonly #dirty = new Set<number>();
  readonly #dirtyRings: number[] = [];

  /** `make` creates a canvas like the one on screen (classes), for the back buffer. */
  constructor(canvas: HTMLCanvasElement, make: () => HTMLCanvasElement, data: LayerData, onComplete: () => void) {
    this.#front = canvas;
    this.#back = make();
    // Software canvases: this painter runs where there is no GPU (or only an emulated one), and
    // there many small blits and putImageData are cheaper on the CPU than through emulated GL.
    this.#frontCtx = this.#front.getContext('2d', { willReadFrequently: true });
    this.#backCtx = this.#back.getContext('2d', { willReadFrequently: true });
    this.#data = data;
    this.#onComplete = onComplete;
  }

  get element(): HTMLCanvasElement {
    return this.#front;
  }

  get shown(): Placement | null {
    return this.#shown;
  }

  get busy(): boolean {
    return this.#job !== null || this.#dirty.size > 0 || this.#dirtyRings.length > 0;
  }

  full(p: Placement): void {
    if (this.#data.count === 0) {
      // Nothing to draw (the map exists before the devices arrive): an empty canvas, not a
      // picture of 2 million transparent pixels put row band by row band.
      this.#job = null;
      this.#dirty.clear();
      this.#dirtyRings.length = 0;
      placeCanvas(this.#front, p);
      this.#frontCtx?.clearRect(0, 0, this.#front.width, this.#front.height);
      this.#shown = p;
      this.#drawnLook = new Uint16Array(0);
      this.#drawnVisible = new Uint8Array(0);
      this.#pixels = null;
      this.#onComplete();
      return;
    }
    const back = this.#back;
    const w = Math.round(p.width * p.dpr);
    const h = Math.round(p.height * p.dpr);
    if (back.width !== w || back.height !== h) {
      back.width = w;
      back.height = h;
    }
    const ctx = this.#backCtx;
    if (!ctx || w === 0 || h === 0) return;
    if (!this.#pixels || this.#pixels.width !== w || this.#pixels.height !== h) {
      this.#pixels = new ImageData(w, h);
      this.#words = new Uint32Array(this.#pixels.data.buffer);
    } else {
      this.#words.fill(0);
    }
    const n = this.#data.count;
    this.#job = { p, ctx, next: 0, row: 0, drawnLook: new Uint16Array(n), drawnVisible: new Uint8Array(n) };
    // What changed before this picture is in it; what changes while it is drawn is repainted after.
    this.#dirty.clear();
    this.#dirtyRings.length = 0;
    this.#runJob(performance.now() + this.#budget(FIRST_SLICE_MS));
  }

  /** Nothing on screen yet (the first picture): use most of each frame, there is nothing to keep smooth. */
  #budget(normal: number): number {
    return this.#shown === null || this.#drawnLook.length === 0 ? FIRST_PICTURE_BUDGET_MS : normal;
  }

  update(slots: ReadonlySet<number>, selection: { from: number; to: number } | null): void {
    for (const s of slots) this.#dirty.add(s);
    if (selection) {
      if (selection.from >= 0) this.#dirtyRings.push(selection.from);
      if (selection.to >= 0) this.#dirtyRings.push(selection.to);
    }
  }

  tick(): void {
    if (this.#job) {
      this.#runJob(performance.now() + this.#budget(PICTURE_BUDGET_MS));
      return;
    }
    this.#repaintDirty(performance.now() + REPAINT_BUDGET_MS);
  }

  #sprite(look: number, p: Placement): Sprite {
    const key = `${p.scale}|${p.dpr}`;
    if (key !== this.#spriteKey) {
      this.#sprites = [];
      this.#spriteKey = key;
    }
    let sprite = this.#sprites[look];
    if (!sprite) {
      sprite = renderSprite(this.#data.looks[look]!, p.scale, p.dpr);
      this.#sprites[look] = sprite;
    }
    return sprite;
  }

  /** The largest sprite's half size: how far from a rectangle a marker can be and still reach it. */
  #maxHalf(p: Placement): number {
    let max = 0;
    for (let k = 0; k < this.#data.looks.length; k++) max = Math.max(max, this.#sprite(k, p).half);
    return max;
  }

  /** Draws slot `i` at placement `p` if its sprite may touch the canvas. */
  #blit(ctx: CanvasRenderingContext2D, i: number, p: Placement): void {
    const d = this.#data;
    const sprite = this.#sprite(d.lookOf[i]!, p);
    const x = d.rel[2 * i]! * p.world + p.tx;
    const y = d.rel[2 * i + 1]! * p.world + p.ty;
    const half = sprite.half;
    if (x < -half || y < -half || x > p.width + half || y > p.height + half) return;
    // Whole pixels: sprites stay crisp and the blit is a plain copy.
    ctx.drawImage(sprite.canvas, Math.round(x - half), Math.round(y - half), 2 * half, 2 * half);
  }

  #drawSelection(ctx: CanvasRenderingContext2D, p: Placement): void {
    const d = this.#data;
    const sel = d.selected;
    if (sel < 0 || sel >= d.count) return;
    this.#blit(ctx, sel, p);
    const x = d.rel[2 * sel]! * p.world + p.tx;
    const y = d.rel[2 * sel + 1]! * p.world + p.ty;
    ctx.beginPath();
    ctx.arc(x, y, ringRadius(d.looks[d.lookOf[sel]!]!, p.scale), 0, Math.PI * 2);
    ctx.lineWidth = RING.width;
    ctx.strokeStyle = '#ffffff';
    ctx.stroke();
  }

  /**
   * Writes slot `i`'s sprite into the picture's pixels (the same pixels `#blit` would draw), only
   * those inside the device-pixel rectangle [cx0, cx1) × [cy0, cy1).
   */
  #write(i: number, p: Placement, cx0: number, cy0: number, cx1: number, cy1: number): void {
    const d = this.#data;
    const sprite = this.#sprite(d.lookOf[i]!, p);
    const x = d.rel[2 * i]! * p.world + p.tx;
    const y = d.rel[2 * i + 1]! * p.world + p.ty;
    const ox = Math.round(x - sprite.half) * p.dpr;
    const oy = Math.round(y - sprite.half) * p.dpr;
    const side = sprite.side;
    if (ox >= cx1 || oy >= cy1 || ox + side <= cx0 || oy + side <= cy0) return;
    const words = this.#words;
    const w = this.#pixels!.width;
    const { offsets, colors } = sprite;
    if (ox >= cx0 && oy >= cy0 && ox + side <= cx1 && oy + side <= cy1) {
      for (let k = 0; k < offsets.length; k++) {
        const o = offsets[k]!;
        const row = (o / side) | 0;
        words[(oy + row) * w + ox + (o - row * side)] = colors[k]!;
      }
      return;
    }
    for (let k = 0; k < offsets.length; k++) {
      const o = offsets[k]!;
      const row = (o / side) | 0;
      const px = ox + (o - row * side);
      const py = oy + row;
      if (px >= cx0 && py >= cy0 && px < cx1 && py < cy1) words[py * w + px] = colors[k]!;
    }
  }

  #runJob(deadline: number): void {
    const job = this.#job;
    const pixels = this.#pixels;
    if (!job || !pixels) return;
    const d = this.#data;
    const { ctx, p } = job;
    const w = pixels.width;
    const h = pixels.height;
    const n = Math.min(d.count, job.drawnLook.length);
    // 1. Markers into the pixel buffer: a plain copy of each sprite's opaque pixels, in draw order.
    while (job.next < n) {
      const end = Math.min(n, job.next + 1024);
      for (let i = job.next; i < end; i++) {
        job.drawnLook[i] = d.lookOf[i]!;
        if (d.visible[i] === 0) continue;
        job.drawnVisible[i] = 1;
        this.#write(i, p, 0, 0, w, h);
      }
      job.next = end;
      if (performance.now() > deadline) return;
    }
    // 2. The buffer onto the back canvas, a band of rows at a time (a whole canvas is one long call).
    while (job.row < h) {
      const rows = Math.min(h - job.row, PUT_ROWS);
      ctx.putImageData(pixels, 0, 0, 0, job.row, w, rows);
      job.row += rows;
      if (job.row < h && performance.now() > deadline) return;
    }
    ctx.setTransform(p.dpr, 0, 0, p.dpr, 0, 0);
    this.#drawSelection(ctx, p);
    // Swap in: the back canvas takes the placement and the front's place in the pane; no copy.
    const back = this.#back;
    placeCanvas(back, p);
    this.#front.replaceWith(back);
    this.#back = this.#front;
    this.#front = back;
    [this.#frontCtx, this.#backCtx] = [this.#backCtx, this.#frontCtx];
    this.#shown = p;
    this.#drawnLook = job.drawnLook;
    this.#drawnVisible = job.drawnVisible;
    this.#job = null;
    this.#onComplete();
  }

  /**
   * Repaints what changed since the picture, in place. The picture's pixels (`#pixels`, what the
   * last full picture wrote) stay the mirror of the canvas: a change rewrites its rectangle there
   * (plain typed-array writes, no canvas state) and copies just that rectangle to the canvas; only
   * the selection, drawn over everything with canvas calls, is redrawn on top where it is touched.
   */
  #repaintDirty(deadline: number): void {
    const p = this.#shown;
    const ctx = this.#frontCtx;
    const pixels = this.#pixels;
    if (!p || !ctx || !pixels) {
      this.#dirty.clear();
      this.#dirtyRings.length = 0;
      return;
    }
    const d = this.#data;
    const scale = p.scale;
    for (const i of this.#dirty) {
      this.#dirty.delete(i);
      if (i >= d.count) continue;
      const x = d.rel[2 * i]! * p.world + p.tx;
      const y = d.rel[2 * i + 1]! * p.world + p.ty;
      // Restyled (same pixels, new colours: renderSprite) or shown/hidden by a filter: either way its
      // rectangle is rebuilt from what lies there, in draw order.
      const half = Math.max(this.#sprite(d.lookOf[i]!, p).half, this.#sprite(this.#drawnLook[i] ?? d.lookOf[i]!, p).half);
      const restyled = d.visible[i] === 1 && this.#drawnVisible[i] === 1;
      this.#repaintRect(ctx, p, x - half, y - half, x + half, y + half, restyled ? i : -1);
      this.#drawnLook[i] = d.lookOf[i]!;
      this.#drawnVisible[i] = d.visible[i]!;
      if (performance.now() > deadline) return;
    }
    while (this.#dirtyRings.length > 0) {
      const i = this.#dirtyRings.pop()!;
      if (i >= d.count) continue;
      const r = ringRadius(d.looks[d.lookOf[i]!]!, scale) + RING.width + 1;
      const x = d.rel[2 * i]! * p.world + p.tx;
      const y = d.rel[2 * i + 1]! * p.world + p.ty;
      this.#repaintRect(ctx, p, x - r, y - r, x + r, y + r, -1);
      if (performance.now() > deadline) return;
    }
  }

  /**
   * Rebuilds a rectangle (canvas CSS px) of the picture and puts it on the canvas. `restyled` >= 0:
   * only that marker changed colour, and every kind's looks cover the same pixels, so it is written
   * over itself and only what is drawn above it (markers of a higher rank, a pole or tank over a
   * camera) is written again; -1: the rectangle is cleared and every marker touching it rewritten.
   */
  #repaintRect(ctx: CanvasRenderingContext2D, p: Placement, x0: number, y0: number, x1: number, y1: number, restyled: number): void {
    const d = this.#data;
    const pixels = this.#pixels!;
    const w = pixels.width;
    const h = pixels.height;
    // Whole CSS px, one more on each side (sprites are placed at rounded positions), in device px.
    const rx0 = Math.floor(x0) - 1;
    const ry0 = Math.floor(y0) - 1;
    const rx1 = Math.ceil(x1) + 1;
    const ry1 = Math.ceil(y1) + 1;
    const cx0 = Math.max(0, rx0 * p.dpr);
    const cy0 = Math.max(0, ry0 * p.dpr);
    const cx1 = Math.min(w, rx1 * p.dpr);
    const cy1 = Math.min(h, ry1 * p.dpr);
    if (cx1 <= cx0 || cy1 <= cy0) return;
    const maxHalf = this.#maxHalf(p);
    const touches = (j: number) => {
      const half = this.#sprite(d.lookOf[j]!, p).half;
      const x = d.rel[2 * j]! * p.world + p.tx;
      const y = d.rel[2 * j + 1]! * p.world + p.ty;
      return !(x + half < rx0 || x - half > rx1 || y + half < ry0 || y - half > ry1);
    };
    const redraw: number[] = [];
    if (restyled >= 0) {
      this.#write(restyled, p, cx0, cy0, cx1, cy1);
      // Only slots of a higher rank can be drawn above it: the grid lists a cell's slots in
      // ascending order and slots are in rank order, so those are at the end of each cell.
      d.visitAbove(rx0, ry0, rx1, ry1, maxHalf, d.rankEnd(d.rankOf[restyled]!), (j) => {
        if (d.visible[j] === 1 && touches(j)) redraw.push(j);
      });
    } else {
      const words = this.#words;
      for (let y = cy0; y < cy1; y++) words.fill(0, y * w + cx0, y * w + cx1);
      d.visitNear(rx0, ry0, rx1, ry1, maxHalf, (j) => {
        if (d.visible[j] === 1 && touches(j)) redraw.push(j);
      });
    }
    if (redraw.length > 1) redraw.sort((a, b) => a - b);
    for (const j of redraw) this.#write(j, p, cx0, cy0, cx1, cy1);
    ctx.putImageData(pixels, 0, 0, cx0, cy0, cx1 - cx0, cy1 - cy0);
    // The selection (marker and ring) is drawn over the picture with canvas calls: again, clipped.
    const sel = d.selected;
    if (sel >= 0 && sel < d.count) {
      const r = ringRadius(d.looks[d.lookOf[sel]!]!, p.scale) + RING.width;
      const x = d.rel[2 * sel]! * p.world + p.tx;
      const y = d.rel[2 * sel + 1]! * p.world + p.ty;
      if (x + r >= rx0 && x - r <= rx1 && y + r >= ry0 && y - r <= ry1) {
        ctx.save();
        ctx.setTransform(p.dpr, 0, 0, p.dpr, 0, 0);
        ctx.beginPath();
        ctx.rect(cx0 / p.dpr, cy0 / p.dpr, (cx1 - cx0) / p.dpr, (cy1 - cy0) / p.dpr);
        ctx.clip();
        this.#drawSelection(ctx, p);
        ctx.restore();
      }
    }
  }
}

// ---- the layer ----------------------------------------------------------------------------------

/** Fired on the map when a complete picture of the devices is on screen; `devices`: how many. */
export const DEVICES_DRAWN_EVENT = 'gsdevicesdrawn';

export interface DeviceLayerOptions {
  pane: string;
  /** Canvas margin around the view, as a fraction of its size (revealed while panning). */
  padding?: number;
  /** Extra CSS px around a marker that still counts as a hit. */
  tolerance?: number;
  /**
   * 'auto': WebGL on a GPU, else canvas 2D. 'canvas2d' never tries WebGL; 'webgl' uses it even in
   * software (tests of the WebGL painter on machines without a GPU).
   */
  renderer?: 'auto' | 'canvas2d' | 'webgl';
}

export class DeviceLayer extends L.Layer implements LayerData {
  readonly #pane: string;
  readonly #padding: number;
  readonly #tolerance: number;
  readonly #rendererOption: 'auto' | 'canvas2d' | 'webgl';
  #painter: Painter | null = null;
  #paneEl: HTMLElement | null = null;
  #webglProbed = false;

  // ---- devices, by slot (slot order = draw order) ----
  #ids: string[] = [];
  readonly #slotOf = new Map<string, number>();
  #originX = 0;
  #originY = 0;
  #rel = new Float32Array(0);
  #styles = new Uint8Array(0);
  #lookOf = new Uint16Array(0);
  #visible = new Uint8Array(0);
  #rankOf = new Uint8Array(0);
  /** Per rank index, the first slot after its devices. */
  #rankEnds: number[] = [];
  #visibleCount = 0;
  readonly #looks: MarkerLook[] = [];
  readonly #lookIndex = new Map<string, number>();
  readonly #lookByObject = new WeakMap<MarkerLook, number>();
  readonly #lookBytes: Uint8Array[] = [];
  #selected = -1;

  // ---- what to draw next frame ----
  #pendingFull = true;
  readonly #pendingSlots = new Set<number>();
  #pendingSelection: { from: number; to: number } | null = null;
  #frame = 0;

  // ---- the current view's placement, its grid, and the animation state ----
  #place: Placement | null = null;
  #cols = 0;
  #rows = 0;
  /** Grid of 32 px cells over the canvas: slots per cell as a counting-sorted list (cellStart[c]..cellStart[c+1]). */
  #cellStart = new Int32Array(1);
  #cellItems = new Int32Array(0);
  #gridDirty = true;
  #animating = false;
  readonly #stats: LayerStats = { renderer: 'none', devices: 0, drawn: 0, visible: 0, draws: 0, lastDrawMs: 0, maxDrawMs: 0 };

  constructor(options: DeviceLayerOptions) {
    super();
    this.#pane = options.pane;
    this.#padding = options.padding ?? 0.1;
    this.#tolerance = options.tolerance ?? 4;
    this.#rendererOption = options.renderer ?? 'auto';
  }

  // ---- LayerData (read by the painters) ----

  get count(): number {
    return this.#ids.length;
  }
  get rel(): Float32Array {
    return this.#rel;
  }
  get styles(): Uint8Array {
    return this.#styles;
  }
  get lookOf(): Uint16Array {
    return this.#lookOf;
  }
  get looks(): readonly MarkerLook[] {
    return this.#looks;
  }
  get visible(): Uint8Array {
    return this.#visible;
  }
  get rankOf(): Uint8Array {
    return this.#rankOf;
  }
  get selected(): number {
    return this.#selected;
  }

  rankEnd(rank: number): number {
    return this.#rankEnds[rank] ?? this.#ids.length;
  }

  visitNear(x0: number, y0: number, x1: number, y1: number, margin: number, visit: (slot: number) => void): void {
    this.visitAbove(x0, y0, x1, y1, margin, 0, visit);
  }

  visitAbove(x0: number, y0: number, x1: number, y1: number, margin: number, minSlot: number, visit: (slot: number) => void): void {
    if (this.#gridDirty) this.#buildGrid();
    const c0 = Math.max(0, Math.floor((x0 - margin) / CELL));
    const c1 = Math.min(this.#cols - 1, Math.floor((x1 + margin) / CELL));
    const r0 = Math.max(0, Math.floor((y0 - margin) / CELL));
    const r1 = Math.min(this.#rows - 1, Math.floor((y1 + margin) / CELL));
    const start = this.#cellStart;
    const items = this.#cellItems;
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const cell = r * this.#cols + c;
        // A cell's slots ascend (#buildGrid): from its end down to minSlot.
        for (let k = start[cell + 1]! - 1; k >= start[cell]! && items[k]! >= minSlot; k--) visit(items[k]!);
      }
    }
  }

  // ---- Leaflet layer lifecycle ----

  override onAdd(map: L.Map): this {
    this.#makeCanvas(map, this.#rendererOption);
    this.#reset(true);
    return this;
  }

  override onRemove(): this {
    if (this.#frame !== 0) cancelAnimationFrame(this.#frame);
    this.#frame = 0;
    this.#painter?.element.remove();
    this.#painter = null;
    return this;
  }

  override getEvents(): Record<string, L.LeafletEventHandlerFn> {
    const events: Record<string, L.LeafletEventHandlerFn> = {
      viewreset: () => this.#reset(),
      moveend: () => this.#reset(),
      zoomstart: () => {
        this.#animating = true;
      },
      zoom: () => this.#zoomTransform(this._map.getCenter(), this._map.getZoom()),
      zoomend: () => {
        this.#animating = false;
      },
      resize: () => this.#reset(),
    };
    if ((this._map as unknown as MapInternals)._zoomAnimated) {
      events.zoomanim = (e) => {
        const z = e as L.ZoomAnimEvent;
        this.#zoomTransform(z.center, z.zoom);
      };
    }
    return events;
  }

  #newCanvas(map: L.Map): HTMLCanvasElement {
    const canvas = document.createElement('canvas');
    canvas.className = 'gs-device-canvas leaflet-layer';
    if ((map as unknown as MapInternals)._zoomAnimated) canvas.classList.add('leaflet-zoom-animated');
    canvas.dataset.testid = 'device-canvas';
    return canvas;
  }

  /**
   * 'auto' starts with canvas 2D and asks for WebGL only once the first picture is up
   * (#probeWebGl): creating a context just to find it runs in software cost the page's start
   * 15–50 ms on the machines that then draw in 2D anyway.
   */
  #makeCanvas(map: L.Map, renderer: 'auto' | 'canvas2d' | 'webgl'): void {
    const onComplete = () => this.#completed();
    let canvas = this.#newCanvas(map);
    let painter: Painter | null = renderer === 'webgl' ? WebGlPainter.create(canvas, this, onComplete, () => this.#fallBack(), true) : null;
    if (!painter) {
      // A canvas that was asked for a WebGL context cannot give a 2D one: start afresh.
      if (renderer === 'webgl') canvas = this.#newCanvas(map);
      painter = new Canvas2dPainter(canvas, () => this.#newCanvas(map), this, onComplete);
    }
    this.#install(map, canvas, painter);
  }

  #install(map: L.Map, canvas: HTMLCanvasElement, painter: Painter): void {
    const old = this.#painter?.element;
    if (old?.parentNode) old.replaceWith(canvas);
    else map.getPane(this.#pane)?.appendChild(canvas);
    this.#painter = painter;
    this.#stats.renderer = painter.kind;
    this.#paneEl = map.getPane(this.#pane) ?? null;
    this.#paneEl?.setAttribute('data-renderer', painter.kind);
  }

  /** On a GPU, WebGL takes over from the 2D painter ('auto', after the first picture, when idle). */
  #probeWebGl(): void {
    const map = this._map;
    if (!map || this.#painter?.kind !== 'canvas2d') return;
    const started = performance.now();
    const canvas = this.#newCanvas(map);
    const painter = WebGlPainter.create(canvas, this, () => this.#completed(), () => this.#fallBack(), false);
    performance.measure('gs:webgl-probe', { start: started });
    if (!painter) return;
    this.#install(map, canvas, painter);
    this.#reset(true);
  }

  /** The WebGL context was lost (driver reset, too many contexts): carry on with canvas 2D. */
  #fallBack(): void {
    const map = this._map;
    if (!map) return;
    console.warn('WebGL context lost; the device layer continues with canvas 2D');
    this.#makeCanvas(map, 'canvas2d');
    this.#reset(true);
  }

  #completed(): void {
    this.#stats.drawn = this.#ids.length;
    if (this.#rendererOption === 'auto' && !this.#webglProbed && this.#ids.length > 0) {
      this.#webglProbed = true;
      const probe = () => this.#probeWebGl();
      if ('requestIdleCallback' in window) requestIdleCallback(probe, { timeout: 5000 });
      else setTimeout(probe, 500);
    }
    // For work that should wait until the map shows its devices (the alarm's audio, main.ts).
    this._map?.fire(DEVICES_DRAWN_EVENT, { devices: this.#ids.length });
  }

  // ---- data ----

  /** Replaces the whole set (a snapshot). O(n): positions are projected once here. */
  setDevices(devices: LayerDevices): void {
    // Slots in draw order: stable by rank (a counting sort over the few distinct ranks), so the
    // buffer order is the order drawn.
    const n = devices.ids.length;
    const byRank: number[] = [];
    for (let k = 0; k < n; k++) byRank[devices.rank[k]!] = (byRank[devices.rank[k]!] ?? 0) + 1;
    const ranks: number[] = [];
    const next: number[] = [];
    for (let r = 0, at = 0; r < byRank.length; r++) {
      if (!byRank[r]) continue;
      next[r] = at;
      at += byRank[r]!;
      ranks.push(r);
    }
    /** Row (in `devices`) of each slot. */
    const rowOf = new Int32Array(n);
    for (let k = 0; k < n; k++) rowOf[next[devices.rank[k]!]!++] = k;
    const selectedId = this.#selected >= 0 ? this.#ids[this.#selected] : undefined;
    this.#ids = new Array<string>(n);
    this.#slotOf.clear();
    this.#rel = new Float32Array(2 * n);
    this.#styles = new Uint8Array(STYLE_BYTES * n);
    this.#lookOf = new Uint16Array(n);
    this.#visible = new Uint8Array(n);
    this.#rankOf = new Uint8Array(n);
    this.#rankEnds = [];
    const wx = new Float64Array(n);
    const wy = new Float64Array(n);
    // Positions relative to the fleet's middle: float32 then resolves well under a pixel at zoom 19.
    let sx = 0;
    let sy = 0;
    for (let i = 0; i < n; i++) {
      const k = rowOf[i]!;
      wx[i] = worldX(devices.lng[k]!);
      wy[i] = worldY(devices.lat[k]!);
      sx += wx[i]!;
      sy += wy[i]!;
    }
    this.#originX = n > 0 ? sx / n : 0;
    this.#originY = n > 0 ? sy / n : 0;
    let visible = 0;
    const rankIndex: number[] = [];
    ranks.forEach((r, index) => (rankIndex[r] = index));
    for (let i = 0; i < n; i++) {
      const k = rowOf[i]!;
      const id = devices.ids[k]!;
      this.#ids[i] = id;
      this.#slotOf.set(id, i);
      this.#rel[2 * i] = wx[i]! - this.#originX;
      this.#rel[2 * i + 1] = wy[i]! - this.#originY;
      const shown = devices.visible[k] === 1 ? 1 : 0;
      this.#visible[i] = shown;
      const rank = rankIndex[devices.rank[k]!]!;
      this.#rankOf[i] = rank;
      this.#rankEnds[rank] = i + 1;
      visible += shown;
      this.#writeLook(i, this.#lookSlot(devices.looks[k]!));
    }
    this.#visibleCount = visible;
    this.#selected = selectedId !== undefined ? (this.#slotOf.get(selectedId) ?? -1) : -1;
    if (this.#place) this.#place = this.#placement(this._map);
    this.#gridDirty = true;
    this.#stats.devices = n;
    this.#stats.drawn = 0;
    this.#pendingFull = true;
    this.#pendingSlots.clear();
    this.#pendingSelection = null;
    this.#requestFrame();
  }

  /** Restyles one device; the redraw is batched into the next animation frame. */
  setLook(id: string, look: MarkerLook): void {
    const i = this.#slotOf.get(id);
    if (i === undefined) return;
    const slot = this.#lookSlot(look);
    if (this.#lookOf[i] === slot) return;
    this.#writeLook(i, slot);
    this.#changed(i);
  }

  /** Shows or hides one device (filters). */
  setVisible(id: string, visible: boolean): void {
    const i = this.#slotOf.get(id);
    if (i === undefined || (this.#visible[i] === 1) === visible) return;
    this.#visible[i] = visible ? 1 : 0;
    this.#styles[i * STYLE_BYTES + 11] = visible ? 1 : 0;
    this.#visibleCount += visible ? 1 : -1;
    this.#changed(i);
  }

  /** Rings the device (drawn on top even when filtered out); null clears it. */
  select(id: string | null): void {
    const i = id === null ? -1 : (this.#slotOf.get(id) ?? -1);
    if (i === this.#selected) return;
    const from = this.#pendingSelection?.from ?? this.#selected;
    this.#selected = i;
    this.#pendingSelection = { from, to: i };
    this.#requestFrame();
  }

  get stats(): LayerStats {
    return { ...this.#stats, visible: this.#visibleCount };
  }

  /**
   * The topmost visible device within its marker (plus the tolerance) of a container point, or
   * null. Null during a zoom animation, when positions are moving.
   */
  hitTest(containerPoint: L.Point): string | null {
    const p = this.#place;
    if (!this._map || !p || this.#animating) return null;
    const local = this._map.containerPointToLayerPoint(containerPoint).subtract(p.topLeft);
    let maxHit = 0;
    for (const look of this.#looks) maxHit = Math.max(maxHit, markerHalf(look, p.scale).hit);
    const reach = maxHit + this.#tolerance;
    let best = -1;
    const consider = (i: number) => {
      const dx = this.#rel[2 * i]! * p.world + p.tx - local.x;
      const dy = this.#rel[2 * i + 1]! * p.world + p.ty - local.y;
      const r = markerHalf(this.#looks[this.#lookOf[i]!]!, p.scale).hit + this.#tolerance;
      if (dx * dx + dy * dy > r * r) return;
      // Slots are in draw order: a higher slot is drawn on top; the selected one is on top of all.
      if (best >= 0 && best === this.#selected) return;
      if (i === this.#selected || i > best) best = i;
    };
    this.visitNear(local.x, local.y, local.x, local.y, reach, (i) => {
      if (this.#visible[i] === 1 || i === this.#selected) consider(i);
    });
    return best >= 0 ? (this.#ids[best] ?? null) : null;
  }

  // ---- drawing ----

  #changed(i: number): void {
    this.#pendingSlots.add(i);
    this.#requestFrame();
  }

  #lookSlot(look: MarkerLook): number {
    const known = this.#lookByObject.get(look);
    if (known !== undefined) return known;
    const key = lookKey(look);
    let slot = this.#lookIndex.get(key);
    if (slot === undefined) {
      slot = this.#looks.length;
      this.#looks.push(look);
      this.#lookBytes.push(lookBytes(look));
      this.#lookIndex.set(key, slot);
    }
    this.#lookByObject.set(look, slot);
    return slot;
  }

  #writeLook(i: number, slot: number): void {
    this.#lookOf[i] = slot;
    this.#styles.set(this.#lookBytes[slot]!, i * STYLE_BYTES);
    this.#styles[i * STYLE_BYTES + 11] = this.#visible[i]!;
  }

  /** The placement for the map's current view: the view plus padding, in layer pixels. */
  #placement(map: L.Map): Placement {
    const size = map.getSize();
    const pad = this.#padding;
    const topLeft = map.containerPointToLayerPoint(size.multiplyBy(-pad)).round();
    const zoom = map.getZoom();
    const world = 2 ** zoom;
    const pixelOrigin = map.getPixelOrigin();
    const tx = this.#originX * world - pixelOrigin.x - topLeft.x;
    const ty = this.#originY * world - pixelOrigin.y - topLeft.y;
    const width = Math.round(size.x * (1 + 2 * pad));
    const height = Math.round(size.y * (1 + 2 * pad));
    let inView = 0;
    for (let i = 0; i < this.#ids.length; i++) {
      if (this.#visible[i] === 0) continue;
      const x = this.#rel[2 * i]! * world + tx;
      const y = this.#rel[2 * i + 1]! * world + ty;
      if (x >= 0 && y >= 0 && x < width && y < height) inView++;
    }
    return { topLeft, zoom, center: map.getCenter(), width, height, dpr: window.devicePixelRatio || 1, world, tx, ty, scale: sizeScale(zoom, inView) };
  }

  #requestFrame(): void {
    if (this.#frame !== 0 || !this._map) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.#tick();
    });
  }

  #tick(): void {
    const painter = this.#painter;
    const p = this.#place;
    if (!painter || !p) return;
    const started = performance.now();
    if (this.#pendingFull) {
      this.#pendingFull = false;
      this.#pendingSlots.clear();
      this.#pendingSelection = null;
      painter.full(p);
    } else if (this.#pendingSlots.size > 0 || this.#pendingSelection) {
      painter.update(this.#pendingSlots, this.#pendingSelection);
      this.#pendingSlots.clear();
      this.#pendingSelection = null;
      painter.tick();
    } else {
      painter.tick();
    }
    this.#measured(started);
    if (painter.busy) this.#requestFrame();
  }

  #measured(started: number): void {
    const ms = performance.now() - started;
    const s = this.#stats;
    s.draws++;
    s.lastDrawMs = ms;
    if (ms > s.maxDrawMs) s.maxDrawMs = ms;
  }

  /** A new view (pan or zoom ended, resize): place and draw at once, so no blank frame shows. */
  #reset(force = false): void {
    const map = this._map;
    const painter = this.#painter;
    if (!map || !painter) return;
    const place = this.#placement(map);
    // Leaflet's invalidateSize fires moveend and resize for one change: one picture is enough.
    const current = this.#place;
    if (!force && current && !this.#pendingFull && samePlacement(current, place)) return;
    this.#place = place;
    this.#gridDirty = true;
    const started = performance.now();
    this.#pendingFull = false;
    this.#pendingSlots.clear();
    this.#pendingSelection = null;
    painter.full(this.#place);
    this.#measured(started);
    if (painter.busy) this.#requestFrame();
  }

  /** During a zoom: scale and shift the picture on screen, as L.Renderer does, until it is redrawn. */
  #zoomTransform(center: L.LatLng, zoom: number): void {
    const map = this._map;
    const canvas = this.#painter?.element;
    const shown = this.#painter?.shown;
    if (!map || !canvas || !shown) return;
    const scale = map.getZoomScale(zoom, shown.zoom);
    const viewHalf = L.point(shown.width / 2, shown.height / 2);
    const currentCenterPoint = map.project(shown.center, zoom);
    const topLeftOffset = viewHalf
      .multiplyBy(-scale)
      .add(currentCenterPoint)
      .subtract((map as unknown as MapInternals)._getNewPixelOrigin(center, zoom));
    L.DomUtil.setTransform(canvas, topLeftOffset, scale);
  }

  /** Counting sort of every slot whose position is on (or just off) the canvas into 32 px cells. */
  #buildGrid(): void {
    this.#gridDirty = false;
    const p = this.#place;
    if (!p) return;
    const cols = Math.max(1, Math.ceil(p.width / CELL));
    const rows = Math.max(1, Math.ceil(p.height / CELL));
    this.#cols = cols;
    this.#rows = rows;
    const cells = cols * rows;
    const start = new Int32Array(cells + 1);
    const n = this.#ids.length;
    const cellOf = new Int32Array(n).fill(-1);
    // Markers centred just off the canvas still show on its edge: they go in the edge cells.
    const margin = CELL;
    for (let i = 0; i < n; i++) {
      const x = this.#rel[2 * i]! * p.world + p.tx;
      const y = this.#rel[2 * i + 1]! * p.world + p.ty;
      if (!(x >= -margin && y >= -margin && x < p.width + margin && y < p.height + margin)) continue;
      const c = Math.min(cols - 1, Math.max(0, Math.floor(x / CELL)));
      const r = Math.min(rows - 1, Math.max(0, Math.floor(y / CELL)));
      const cell = r * cols + c;
      cellOf[i] = cell;
      start[cell + 1]!++;
    }
    for (let c = 0; c < cells; c++) start[c + 1]! += start[c]!;
    const fill = start.slice(0, cells);
    const items = new Int32Array(start[cells]!);
    for (let i = 0; i < n; i++) {
      const cell = cellOf[i]!;
      if (cell >= 0) items[fill[cell]!++] = i;
    }
    this.#cellStart = start;
    this.#cellItems = items;
  }
}
