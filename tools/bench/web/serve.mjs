// A static server for the web app benchmark: serves a built web app folder as CloudFront would
// (brotli or gzip by Accept-Encoding, the same cache headers, index.html for deep links).
//   node serve.mjs <dir> <port>
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, normalize, extname } from 'node:path';
import { brotliCompressSync, gzipSync, constants } from 'node:zlib';

const [dir, port] = process.argv.slice(2);
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  let rel = normalize(path).replace(/^\/+/, '');
  if (rel.includes('..')) return res.writeHead(404).end();
  if (!rel || !extname(rel)) rel = 'index.html';
  let body;
  try {
    body = await readFile(join(dir, rel));
  } catch {
    return res.writeHead(404).end();
  }
  const headers = {
    'content-type': types[extname(rel)] || 'application/octet-stream',
    'cache-control': rel.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
    vary: 'accept-encoding',
  };
  const accept = String(req.headers['accept-encoding'] || '');
  if (/\bbr\b/.test(accept)) {
    body = brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } });
    headers['content-encoding'] = 'br';
  } else if (/\bgzip\b/.test(accept)) {
    body = gzipSync(body, { level: 9 });
    headers['content-encoding'] = 'gzip';
  }
  headers['content-length'] = body.length;
  res.writeHead(200, headers).end(body);
}).listen(Number(port), '127.0.0.1');
