/**
 * Builds the browser dashboard into dashboard/dist (served by the gateway at `/`):
 * app.js (+ map) bundled by esbuild, boot.js (the page's first script) beside it, both carrying
 * the live feed's worker as a string, plus index.html, styles.css and Leaflet's CSS and images.
 *
 *   npx tsx scripts/build-dashboard.ts            one build, one summary line, exit 1 on error
 *   npx tsx scripts/build-dashboard.ts --watch    rebuild on change (development)
 */
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = path.join(root, 'dashboard/src');
const outDir = path.join(root, 'dashboard/dist');
// Resolved through Node so a hoisted or nested node_modules both work.
const leafletDist = path.dirname(createRequire(import.meta.url).resolve('leaflet/dist/leaflet.css'));

const buildOptions: esbuild.BuildOptions = {
  entryPoints: [path.join(srcDir, 'main.ts')],
  outfile: path.join(outDir, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  // Leaflet 1.9's package.json points only at its UMD build; its ESM build tree-shakes and needs no globals.
  alias: { leaflet: path.join(leafletDist, 'leaflet-src.esm.js') },
  metafile: true,
  logLevel: 'silent',
};

/**
 * boot.js: the page's first script, classic (not a module) so that index.html runs it while the
 * parser reaches it, before the app bundle is even compiled. It starts the session check, the
 * site and tank requests and the live feed (dashboard/src/boot.ts).
 */
const bootOptions: esbuild.BuildOptions = {
  ...buildOptions,
  entryPoints: [path.join(srcDir, 'boot.ts')],
  outfile: path.join(outDir, 'boot.js'),
  format: 'iife',
};

/**
 * The live feed's worker (dashboard/src/feed-worker.ts), built first and put into boot.js and
 * app.js as a string (`__FEED_WORKER_SOURCE__`): the page starts it from a Blob, with no request
 * of its own to wait for among the page's first ones (feed-connection.ts).
 */
async function feedWorkerSource(): Promise<string> {
  const result = await esbuild.build({
    ...buildOptions,
    entryPoints: [path.join(srcDir, 'feed-worker.ts')],
    outfile: path.join(outDir, 'feed-worker.js'),
    format: 'iife',
    sourcemap: false,
    metafile: false,
    write: false,
  });
  const code = result.outputFiles?.[0]?.text;
  if (!code) throw new Error('feed-worker.ts built to nothing');
  return code;
}

const withWorker = (options: esbuild.BuildOptions, source: string): esbuild.BuildOptions => ({
  ...options,
  define: { ...options.define, __FEED_WORKER_SOURCE__: JSON.stringify(source) },
});

/** Static files next to the bundle; leaflet.css finds its marker images at ./images/. */
async function copyStatic(): Promise<string[]> {
  const copies: Array<[string, string]> = [
    [path.join(srcDir, 'index.html'), 'index.html'],
    [path.join(srcDir, 'styles.css'), 'styles.css'],
    [path.join(leafletDist, 'leaflet.css'), 'leaflet.css'],
    [path.join(leafletDist, 'images'), 'images'],
  ];
  await Promise.all(copies.map(([from, to]) => cp(from, path.join(outDir, to), { recursive: true })));
  return copies.map(([, to]) => (to === 'images' ? 'images/' : to));
}

function describe(results: esbuild.BuildResult[], statics: string[], startedAt: number): string {
  const outputs = results
    .flatMap((result) => Object.entries(result.metafile?.outputs ?? {}))
    .sort(([a], [b]) => Number(a.endsWith('.map')) - Number(b.endsWith('.map')))
    .map(([file, { bytes }]) => `${path.basename(file)} ${(bytes / 1024).toFixed(1)} kB`);
  const rel = path.relative(process.cwd(), outDir) || '.';
  return `build-dashboard: wrote ${rel}/ (${[...outputs, ...statics].join(', ')}) in ${Date.now() - startedAt} ms`;
}

function formatErrors(err: unknown): string {
  if (err && typeof err === 'object' && 'errors' in err && Array.isArray(err.errors)) {
    const messages = esbuild.formatMessagesSync(err.errors as esbuild.Message[], { kind: 'error', color: false });
    return messages.join('\n');
  }
  return err instanceof Error ? err.message : String(err);
}

async function buildOnce(): Promise<void> {
  const startedAt = Date.now();
  // Bundle in memory first: a failed build leaves the last good dist in place.
  const worker = await feedWorkerSource();
  const results = await Promise.all([buildOptions, bootOptions].map((options) => esbuild.build({ ...withWorker(options, worker), write: false })));
  for (const w of results.flatMap((r) => r.warnings)) console.warn(esbuild.formatMessagesSync([w], { kind: 'warning', color: false }).join(''));
  // Then a clean dist: stale files from renamed sources must not be served.
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const [statics] = await Promise.all([
    copyStatic(),
    ...results.flatMap((r) => r.outputFiles ?? []).map((file) => writeFile(file.path, file.contents)),
  ]);
  console.log(describe(results, statics, startedAt));
}

async function watch(): Promise<void> {
  await mkdir(outDir, { recursive: true });
  let startedAt = Date.now();
  // The worker's source is read once: restart the watch after changing feed-worker.ts.
  const worker = await feedWorkerSource();
  const ctx = await esbuild.context({
    ...withWorker(buildOptions, worker),
    plugins: [
      {
        name: 'copy-static-and-report',
        setup(build) {
          build.onStart(() => {
            startedAt = Date.now();
          });
          build.onEnd(async (result) => {
            if (result.errors.length > 0) {
              console.error(esbuild.formatMessagesSync(result.errors, { kind: 'error', color: false }).join('\n'));
              return;
            }
            console.log(describe([result], await copyStatic(), startedAt));
          });
        },
      },
    ],
  });
  const boot = await esbuild.context(withWorker(bootOptions, worker));
  await Promise.all([ctx.watch(), boot.watch()]);
  console.log('build-dashboard: watching dashboard/src (index.html and styles.css are copied on each JS rebuild)');
}

const run = process.argv.includes('--watch') ? watch : buildOnce;
run().catch((err: unknown) => {
  console.error(`build-dashboard: failed\n${formatErrors(err)}`);
  process.exitCode = 1;
});
