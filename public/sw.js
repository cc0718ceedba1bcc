// The app's service worker: keeps the app and the default model so that the page loads
// and solves mazes with the server stopped.
//
// Network first, so that a new build or model is picked up as soon as the server has it;
// the cache answers when the network fails. /api requests are never cached (answers
// depend on the server), and a solve on the server says so when it is unreachable.
const CACHE = 'trm-app-v2';
// The CPU worker's files are not linked from the page (the app starts the worker itself)
// and keep fixed names (a worker is named at run time): listed here.
const WORKER = ['cpu-worker.js', 'trm-worker.js', 'trm-worker_bg.wasm'];
const CORE = ['index.html', 'manifest.webmanifest', 'favicon.svg', ...WORKER,
  'models/default/config.toml', 'models/default/model.safetensors'];

function isApi(url) {
  return url.pathname.includes('/api/');
}

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // The app's scripts and wasm have hashed names: read them from the page itself.
    const page = await fetch('./', { cache: 'no-cache' });
    const html = await page.clone().text();
    await cache.put('./', page);
    const linked = [...html.matchAll(/(?:href|src|from)\s*=?\s*["']([^"']+)["']/g)]
      .map((m) => m[1])
      .filter((u) => !/^(https?:|data:|#)/.test(u));
    await Promise.all([...new Set([...CORE, ...linked])].map(async (url) => {
      try {
        const response = await fetch(url, { cache: 'no-cache' });
        if (response.ok) await cache.put(url, response);
      } catch (e) {
        // A missing optional file (no default model) must not stop the install.
      }
    }));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin || isApi(url)) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const response = await fetch(event.request);
      if (response.ok) await cache.put(event.request, response.clone());
      return response;
    } catch (error) {
      const cached = await cache.match(event.request, { ignoreSearch: true });
      if (cached) return cached;
      if (event.request.mode === 'navigate') {
        const page = await cache.match('./');
        if (page) return page;
      }
      throw error;
    }
  })());
});
