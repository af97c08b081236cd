/**
 * @module console/assets
 * The console's one stylesheet and one script, served from memory (no build step, no CDN). The
 * script only refreshes `data-live` regions by polling their fragment URL while the tab is visible
 * (every `data-live-ms`, default 5 s, at least 1 s).
 */

export const STYLE = `*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,sans-serif;color:#1c2430;background:#f5f7fa}
header{display:flex;gap:24px;align-items:center;padding:10px 24px;background:#14324f;color:#fff}
header a{color:#dce9f7;text-decoration:none;margin-right:16px}header .brand{font-weight:700;font-size:18px;color:#fff}
header .user{margin-left:auto;display:flex;gap:10px;align-items:center}main{padding:16px 24px;max-width:1200px}
table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0 20px}th,td{padding:7px 10px;border-bottom:1px solid #e3e8ef;text-align:left;vertical-align:top}
th{background:#eef2f7;font-weight:600}.card{background:#fff;padding:14px;border:1px solid #e3e8ef;border-radius:6px;max-width:520px}
.card label{display:block;margin:6px 0}input,select{padding:4px 6px}button{padding:5px 12px;cursor:pointer}
.inline{display:inline;margin:0}.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;background:#e3e8ef}
.badge.public,.badge.ok{background:#d8f0dc;color:#1d5e2a}.badge.private{background:#f9e1d9;color:#7a2e12}.badge.nydus{background:#dce6fa;color:#1e3f85}
.badge.none{background:#eee;color:#666}.error{color:#a01d1d;background:#fde8e8;padding:8px 12px;border-radius:4px}
.secret{border-color:#e2b100;background:#fff8dc}.tags{list-style:none;margin:0;padding:0}.empty{color:#777}.hint{color:#666}
code{font-family:ui-monospace,monospace;font-size:12.5px}#p2p-tasks code,#tasks code,#jobs code{word-break:break-all}fieldset{border:1px solid #e3e8ef;margin:6px 0}
`;

export const LIVE_SCRIPT = `'use strict';
(function () {
  var PERIOD = 5000;
  var MIN_PERIOD = 1000;
  function refresh(el) {
    if (document.hidden) return;
    fetch(el.getAttribute('data-live'), { credentials: 'same-origin', headers: { accept: 'text/html' } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (t) { if (t !== null && t !== el.innerHTML) el.innerHTML = t; })
      .catch(function () {});
  }
  document.querySelectorAll('[data-live]').forEach(function (el) {
    var ms = Number(el.getAttribute('data-live-ms')) || PERIOD;
    setInterval(function () { refresh(el); }, Math.max(MIN_PERIOD, ms));
  });
})();
`;
