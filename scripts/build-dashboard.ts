/**
 * Builds the browser dashboard into dashboard/dist (served by the gateway at `/`):
 * app.js (+ map) bundled by esbuild, plus index.html, styles.css and Leaflet's CSS and images.
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

function describe(result: esbuild.BuildResult, statics: string[], startedAt: number): string {
  const outputs = Object.entries(result.metafile?.outputs ?? {})
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
  const result = await esbuild.build({ ...buildOptions, write: false });
  for (const w of result.warnings) console.warn(esbuild.formatMessagesSync([w], { kind: 'warning', color: false }).join(''));
  // Then a clean dist: stale files from renamed sources must not be served.
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const [statics] = await Promise.all([
    copyStatic(),
    ...(result.outputFiles ?? []).map((file) => writeFile(file.path, file.contents)),
  ]);
  console.log(describe(result, statics, startedAt));
}

async function watch(): Promise<void> {
  await mkdir(outDir, { recursive: true });
  let startedAt = Date.now();
  const ctx = await esbuild.context({
    ...buildOptions,
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
            console.log(describe(result, await copyStatic(), startedAt));
          });
        },
      },
    ],
  });
  await ctx.watch();
  console.log('build-dashboard: watching dashboard/src (index.html and styles.css are copied on each JS rebuild)');
}

const run = process.argv.includes('--watch') ? watch : buildOnce;
run().catch((err: unknown) => {
  console.error(`build-dashboard: failed\n${formatErrors(err)}`);
  process.exitCode = 1;
});
