/**
 * @module console/pages
 * The console's pages, rendered on the server from views (no data fetching here): the layout,
 * login, projects, a project's repositories, a repository's artifacts (with each tag's Nydus form),
 * robot accounts, and the error page. Every form that changes state carries the session's CSRF token.
 */
import type {
  ArtifactView,
  BenchReportView,
  ConsoleUser,
  ConversionView,
  ConversionsView,
  P2pView,
  ProjectView,
  QuotaView,
  RepositoryView,
  RobotView,
  WebhookPolicyView,
} from './backend.js';
import { type Html, html } from './html.js';

export interface Frame {
  viewer: ConsoleUser | undefined;
  /** The session's CSRF token (empty when anonymous). */
  csrf: string;
}

const csrfField = (csrf: string): Html => html`<input type="hidden" name="_csrf" value="${csrf}">`;

function when(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

/** Bytes as B / KiB / MiB / GiB with one decimal. */
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** A duration as ms / s / min s. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/** The path of a repository's page (nested names keep their slashes percent-encoded in one segment). */
export function repoPath(repo: string): string {
  const slash = repo.indexOf('/');
  return `/projects/${encodeURIComponent(repo.slice(0, slash))}/repositories/${encodeURIComponent(repo.slice(slash + 1))}`;
}

export function layout(title: string, f: Frame, body: Html): Html {
  const who = f.viewer
    ? html`<span class="who">${f.viewer.name}${f.viewer.admin ? ' (admin)' : ''}</span>
        <form method="post" action="/logout" class="inline">${csrfField(f.csrf)}<button type="submit" id="logout">Log out</button></form>`
    : html`<a href="/login" id="login-link">Log in</a>`;
  const robots = f.viewer?.admin ? html`<a href="/robots">Robot accounts</a><a href="/p2p">P2P</a>` : '';
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Ferry</title><link rel="stylesheet" href="/console/style.css"><script src="/console/live.js" defer></script></head>
<body><header><a href="/projects" class="brand">Ferry</a><nav><a href="/projects">Projects</a><a href="/conversions">Conversions</a>${f.viewer ? html`<a href="/bench">Bench</a>` : ''}${robots}</nav><div class="user">${who}</div></header>
<main><h1>${title}</h1>${body}</main></body></html>
`;
}

export function loginPage(csrf: string, error?: string): Html {
  return layout(
    'Log in',
    { viewer: undefined, csrf: '' },
    html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}
<form method="post" action="/login" class="card">${csrfField(csrf)}
<label>User name <input name="username" autocomplete="username" required maxlength="255"></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required maxlength="1024"></label>
<button type="submit" id="login-submit">Log in</button></form>
<p class="hint">Robot accounts cannot log in here; they use the registry API.</p>`,
  );
}

export function projectsPage(f: Frame, projects: ProjectView[], error?: string): Html {
  const quotas = projects.some((p) => p.quota);
  const rows = projects.map(
    (p) => html`<tr><td><a href="/projects/${encodeURIComponent(p.name)}">${p.name}</a></td>
<td><span class="badge ${p.public ? 'public' : 'private'}">${p.public ? 'public' : 'private'}</span></td><td>${p.repoCount}</td>${quotas ? html`<td class="quota">${p.quota ? quotaText(p.quota) : ''}</td>` : ''}<td>${when(p.createdAt)}</td></tr>`,
  );
  const create = f.viewer?.admin
    ? html`<h2>New project</h2><form method="post" action="/projects" class="card">${csrfField(f.csrf)}
<label>Name <input name="name" required maxlength="255" pattern="[a-z0-9]+([._\\-][a-z0-9]+)*"></label>
<label><input type="checkbox" name="public" value="true"> Public (anyone may pull)</label>
<button type="submit" id="create-project">Create project</button></form>`
    : '';
  return layout(
    'Projects',
    f,
    html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}
<table id="projects"><thead><tr><th>Name</th><th>Access</th><th>Repositories</th>${quotas ? html`<th>Storage used / quota</th>` : ''}<th>Created (UTC)</th></tr></thead>
<tbody>${rows.length ? rows : html`<tr><td colspan="5" class="empty">No projects you can see.</td></tr>`}</tbody></table>${create}`,
  );
}

/** `used / hard (percent)`, or `used / unlimited`. */
export function quotaText(q: QuotaView): string {
  if (q.hard < 0) return `${bytes(q.used)} / unlimited`;
  const pct = q.hard === 0 ? 100 : (q.used / q.hard) * 100;
  return `${bytes(q.used)} / ${bytes(q.hard)} (${pct.toFixed(pct < 10 ? 1 : 0)} %)`;
}

const DELIVERY_BADGE: Record<string, string> = { Success: 'ok', Error: 'private', Stopped: 'none', Pending: 'none', Running: 'nydus' };

/** A project's webhook policies, each with its target addresses and recent deliveries. */
export function webhooksSection(policies: WebhookPolicyView[]): Html {
  const policy = (po: WebhookPolicyView): Html => {
    const rows = po.deliveries.map(
      (d) =>
        html`<tr><td>${d.eventType}</td><td><code>${d.repo}</code></td><td><span class="badge ${DELIVERY_BADGE[d.status] ?? 'none'} delivery-status">${d.status}</span>${d.lastError ? html`<div><small>${d.lastError}</small></div>` : ''}</td><td>${d.attempts}</td><td>${when(d.createdAt)}</td><td>${when(d.updatedAt)}</td></tr>`,
    );
    return html`<div class="policy" data-policy="${po.id}"><h3>${po.name} <span class="badge ${po.enabled ? 'ok' : 'none'}">${po.enabled ? 'enabled' : 'disabled'}</span></h3>
<p>Events: ${po.eventTypes.join(', ')} → ${po.addresses.map((a) => html`<code>${a}</code> `)}</p>
<table class="deliveries"><thead><tr><th>Event</th><th>Repository</th><th>Status</th><th>Attempts</th><th>Created (UTC)</th><th>Updated (UTC)</th></tr></thead>
<tbody>${rows.length ? rows : html`<tr><td colspan="6" class="empty">No deliveries yet.</td></tr>`}</tbody></table></div>`;
  };
  return html`<h2>Webhook policies</h2><div id="webhooks">${policies.length ? policies.map(policy) : html`<p class="empty">No webhook policies.</p>`}</div>`;
}

export function projectPage(f: Frame, project: ProjectView, repos: RepositoryView[], policies?: WebhookPolicyView[]): Html {
  const rows = repos.map(
    (r) =>
      html`<tr><td><a href="${repoPath(r.name)}">${r.name}</a></td><td>${r.artifactCount}</td><td>${r.pullCount}</td><td>${when(r.updatedAt)}</td></tr>`,
  );
  return layout(
    `Project ${project.name}`,
    f,
    html`<p><span class="badge ${project.public ? 'public' : 'private'}">${project.public ? 'public' : 'private'}</span>
${project.quota ? html` Storage: <span id="quota">${quotaText(project.quota)}</span>` : ''}</p>
<table id="repositories"><thead><tr><th>Repository</th><th>Artifacts</th><th>Pulls</th><th>Updated (UTC)</th></tr></thead>
<tbody>${rows.length ? rows : html`<tr><td colspan="4" class="empty">No repositories yet.</td></tr>`}</tbody></table>${policies ? webhooksSection(policies) : ''}`,
  );
}

/** The artifacts table alone (the live-updated fragment of the repository page). */
/** "RAFS v6 · 812 chunks in 2 blobs · prefetch trace" for a Nydus artifact. */
function nydusFacts(n: NonNullable<ArtifactView['nydus']>): Html {
  const parts =
    n.chunks !== undefined
      ? [`RAFS v${n.rafs}`, `${n.chunks} chunks in ${n.blobs} blob${n.blobs === 1 ? '' : 's'}`]
      : ['bootstrap not readable'];
  return html`<small class="nydus-facts">${parts.join(' · ')} · ${
    n.trace ? html`<span class="badge ok">prefetch trace</span>` : html`<span class="badge none">no prefetch trace</span>`
  }</small>`;
}

export function artifactsTable(artifacts: ArtifactView[]): Html {
  const byTag = new Map(artifacts.flatMap((a) => a.tags.map((t) => [t, a] as const)));
  const tagCell = (t: string): Html => {
    const self = byTag.get(t);
    if (self?.nydus) return html`<li><code>${t}</code> <span class="badge nydus">Nydus</span> ${nydusFacts(self.nydus)}</li>`;
    // e.g. a merged index (its Nydus entry is a manifest of its own)
    if (t.endsWith('-nydus')) return html`<li><code>${t}</code> <span class="badge nydus">Nydus</span></li>`;
    const accel = byTag.get(`${t}-nydus`);
    return html`<li><code>${t}</code> ${
      accel
        ? html`<span class="badge ok">accelerated: <code>${t}-nydus</code></span>${accel.nydus ? html` ${nydusFacts(accel.nydus)}` : ''}`
        : html`<span class="badge none">not accelerated</span>`
    }</li>`;
  };
  const rows = artifacts.map(
    (a) => html`<tr><td><ul class="tags">${a.tags.length ? a.tags.map(tagCell) : html`<li class="empty">untagged</li>`}</ul></td>
<td><code class="digest" title="${a.digest}">${a.digest.slice(0, 19)}…</code>${a.subject ? html`<br><small>refers to <code>${a.subject.slice(0, 19)}…</code></small>` : ''}</td>
<td>${bytes(a.size)}</td><td><small>${a.mediaType}</small></td><td>${when(a.pushedAt)}</td></tr>`,
  );
  return html`<table id="artifacts"><thead><tr><th>Tags</th><th>Digest</th><th>Manifest size</th><th>Media type</th><th>Pushed (UTC)</th></tr></thead>
<tbody>${rows.length ? rows : html`<tr><td colspan="5" class="empty">No artifacts.</td></tr>`}</tbody></table>`;
}

export function repositoryPage(f: Frame, repo: string, artifacts: ArtifactView[]): Html {
  const project = repo.slice(0, repo.indexOf('/'));
  return layout(
    `Repository ${repo}`,
    f,
    html`<p><a href="/projects/${encodeURIComponent(project)}">← project ${project}</a></p>
<div data-live="${repoPath(repo)}?fragment=artifacts">${artifactsTable(artifacts)}</div>`,
  );
}

const STATE_BADGE: Record<ConversionView['state'], string> = { queued: 'none', running: 'nydus', completed: 'ok', failed: 'private' };

function conversionRow(f: Frame, t: ConversionView): Html {
  const retry = t.canRetry
    ? html`<form method="post" action="/conversions/${encodeURIComponent(t.id)}/retry" class="inline">${csrfField(f.csrf)}<button type="submit" class="retry">Retry</button></form>`
    : '';
  const target = t.state === 'completed' && t.target ? html`<br><small>→ <code class="target">${t.target}</code></small>` : '';
  return html`<tr data-task="${t.id}"><td><code>${t.source}</code>${target}</td>
<td><span class="badge ${STATE_BADGE[t.state]} state">${t.state}</span>${t.reason ? html`<div class="reason"><small>${t.reason}</small></div>` : ''}</td>
<td>${t.attempts}</td><td>${when(t.createdAt)}</td><td>${duration(t.durationMs)}${t.finishedAt === undefined ? ' so far' : ''}</td>
<td>${t.sourceSize ? bytes(t.sourceSize) : ''}${t.targetSize ? html` → ${bytes(t.targetSize)}` : ''}</td><td>${retry}</td></tr>`;
}

/** The conversion tasks, grouped as queue, running, failed and completed (the live-updated fragment). */
export function conversionsTable(f: Frame, v: ConversionsView): Html {
  if (!v.configured) {
    return html`<p class="hint" id="conversions">No accel service is linked to this registry (set <code>console.accel</code> in its config).</p>`;
  }
  const order: ConversionView['state'][] = ['queued', 'running', 'failed', 'completed'];
  const count = (s: ConversionView['state']): number => v.tasks.filter((t) => t.state === s).length;
  const rows = order.flatMap((s) => v.tasks.filter((t) => t.state === s).map((t) => conversionRow(f, t)));
  return html`<div id="conversions">${v.error ? html`<p class="error" role="alert">${v.error}</p>` : ''}
<p class="counts">${order.map((s) => html`<span class="badge ${STATE_BADGE[s]}">${s}: <b id="count-${s}">${count(s)}</b></span> `)}</p>
<table id="tasks"><thead><tr><th>Source / Nydus image</th><th>State</th><th>Attempts</th><th>Created (UTC)</th><th>Duration</th><th>Size</th><th></th></tr></thead>
<tbody>${rows.length ? rows : html`<tr><td colspan="7" class="empty">No conversion tasks you can see.</td></tr>`}</tbody></table></div>`;
}

export function conversionsPage(f: Frame, v: ConversionsView, error?: string): Html {
  return layout(
    'Conversions',
    f,
    html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}<p class="hint">Tasks of the accel service for repositories you may pull; updated every 2 s while this tab is visible.</p>
<div data-live="/conversions?fragment=tasks" data-live-ms="2000">${conversionsTable(f, v)}</div>`,
  );
}

/** The share of bytes that came from peers, as a percentage with one decimal ('–' before any). */
export function peerShare(t: P2pView['traffic']): string {
  const all = t.fromPeers + t.fromSource;
  return all === 0 ? '–' : `${((t.fromPeers / all) * 100).toFixed(1)} %`;
}

export function p2pPage(f: Frame, v: P2pView): Html {
  if (!v.configured) {
    return layout(
      'P2P',
      f,
      html`<p class="hint">No P2P scheduler is linked to this registry (set <code>console.scheduler</code> in its config).</p>`,
    );
  }
  const hosts = v.hosts.map(
    (h) =>
      html`<tr><td>${h.hostname}</td><td><code>${h.ip}</code></td><td>${h.seed ? html`<span class="badge nydus">seed peer</span>` : 'peer'}</td><td>${h.peers}</td></tr>`,
  );
  const tasks = v.tasks.map(
    (t) =>
      html`<tr><td><code title="${t.id}">${t.url}</code></td><td>${t.state}</td><td>${t.contentLength >= 0 ? bytes(t.contentLength) : ''}</td><td>${t.peers}</td><td>${t.succeededPeers}</td><td>${t.backToSourcePeers}</td></tr>`,
  );
  const jobs = v.jobs.map(
    (j) =>
      html`<tr data-job="${j.id}"><td>${j.id}</td><td><code>${j.url}</code></td><td><span class="badge ${j.state === 'SUCCESS' ? 'ok' : j.state === 'FAILURE' ? 'private' : 'none'} job-state">${j.state}</span>${j.error ? html`<div><small>${j.error}</small></div>` : ''}</td><td>${j.successTasks} / ${j.failureTasks}</td><td>${j.createdAt}</td></tr>`,
  );
  const seeds = v.hosts.filter((h) => h.seed).length;
  return layout(
    'P2P',
    f,
    html`${v.error ? html`<p class="error" role="alert">${v.error}</p>` : ''}
<table id="traffic"><thead><tr><th>Bytes from peers</th><th>Bytes from the registry (back to source)</th><th>Share from peers</th><th>Hosts</th><th>Seed peers</th></tr></thead>
<tbody><tr><td id="from-peers">${bytes(v.traffic.fromPeers)}</td><td id="from-source">${bytes(v.traffic.fromSource)}</td><td id="peer-share">${peerShare(v.traffic)}</td><td>${v.hosts.length}</td><td id="seed-count">${seeds}</td></tr></tbody></table>
<h2>Hosts</h2><table id="hosts"><thead><tr><th>Host</th><th>IP</th><th>Kind</th><th>Peers (tasks)</th></tr></thead>
<tbody>${hosts.length ? hosts : html`<tr><td colspan="4" class="empty">No hosts announced.</td></tr>`}</tbody></table>
<h2>Tasks</h2><table id="p2p-tasks"><thead><tr><th>URL</th><th>State</th><th>Size</th><th>Peers</th><th>Finished</th><th>Back to source</th></tr></thead>
<tbody>${tasks.length ? tasks : html`<tr><td colspan="6" class="empty">No tasks.</td></tr>`}</tbody></table>
<h2>Preheat jobs</h2><table id="jobs"><thead><tr><th>Id</th><th>Image</th><th>State</th><th>Tasks ok / failed</th><th>Created</th></tr></thead>
<tbody>${jobs.length ? jobs : html`<tr><td colspan="5" class="empty">No preheat jobs.</td></tr>`}</tbody></table>`,
  );
}

export function benchPage(f: Frame, v: BenchReportView): Html {
  const skipped = v.skipped.length
    ? html`<details class="hint" id="bench-skipped"><summary>${v.skipped.length} report(s) not read</summary><ul>${v.skipped.map((x) => html`<li>${x}</li>`)}</ul></details>`
    : '';
  if (!v.configured) {
    return layout(
      'Bench',
      f,
      html`<p class="hint">No report directory is configured (set <code>console.benchDir</code> to <code>ferry bench --out</code>'s parent).</p>`,
    );
  }
  if (!v.name) return layout('Bench', f, html`${skipped}<p class="empty">No <code>ferry bench</code> report yet.</p>`);
  const rows = v.rows.map(
    (r) =>
      html`<tr><td>${r.workload}</td><td>${r.registry}</td><td>${r.bandwidth}</td><td>${r.nodes}</td><td>${r.mode}</td><td>${r.runs}${r.failures ? html` <span class="badge private">${r.failures} failed</span>` : ''}</td><td>${duration(r.readyMedianMs)}</td><td>${bytes(Math.round(r.registryBytesMedian))}</td><td>${(r.registryBytesPerImage * 100).toFixed(1)} %</td><td>${r.speedup === null ? '–' : `${r.speedup.toFixed(2)}×`}</td></tr>`,
  );
  const modes = v.modes.map((m) => html`<li>${m.label}: ${m.run ? 'run' : html`not run — ${m.reason}`}</li>`);
  return layout(
    'Bench',
    f,
    html`${skipped}<p id="bench-report">Report <code>${v.name}</code>: ${v.startedAt} → ${v.finishedAt} (commit <code>${v.gitCommit}</code>)</p>
<p class="hint">${v.machine}<br>${v.settings}</p><ul>${modes}</ul>
<table id="bench"><thead><tr><th>Workload</th><th>Registry</th><th>Link</th><th>Nodes</th><th>Mode</th><th>Runs</th><th>Ready (median)</th><th>Registry bytes (median)</th><th>% of image</th><th>Speed-up vs OCI</th></tr></thead>
<tbody>${rows.length ? rows : html`<tr><td colspan="10" class="empty">No results.</td></tr>`}</tbody></table>
${v.notes.length ? html`<h2>Notes</h2><ul>${v.notes.map((n) => html`<li>${n}</li>`)}</ul>` : ''}`,
  );
}

export function robotsPage(
  f: Frame,
  robots: RobotView[],
  projects: ProjectView[],
  created?: { name: string; secret: string },
  error?: string,
): Html {
  const shown = created
    ? html`<div class="secret card" role="status" id="robot-secret"><p>Robot <code>${created.name}</code> created. Its secret is shown <strong>this once</strong>; copy it now:</p>
<pre><code id="secret-value">${created.secret}</code></pre></div>`
    : '';
  const rows = robots.map(
    (r) => html`<tr><td><code>${r.name}</code><br><small>${r.description}</small></td><td>${r.scopes.map((s) => html`<div>${s}</div>`)}</td>
<td>${r.disabled ? html`<span class="badge private">disabled</span>` : html`<span class="badge ok">enabled</span>`}</td>
<td>${r.expiresAt === -1 ? 'never' : when(r.expiresAt * 1000)}</td>
<td><form method="post" action="/robots/${r.id}/${r.disabled ? 'enable' : 'disable'}" class="inline">${csrfField(f.csrf)}<button type="submit">${r.disabled ? 'Enable' : 'Disable'}</button></form></td></tr>`,
  );
  const options = projects.map((p) => html`<option value="${p.name}">${p.name}</option>`);
  return layout(
    'Robot accounts',
    f,
    html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}${shown}
<table id="robots"><thead><tr><th>Name</th><th>Scopes</th><th>State</th><th>Expires</th><th></th></tr></thead>
<tbody>${rows.length ? rows : html`<tr><td colspan="5" class="empty">No robot accounts.</td></tr>`}</tbody></table>
<h2>New robot account</h2><form method="post" action="/robots" class="card">${csrfField(f.csrf)}
<label>Project <select name="project" required>${options}</select></label>
<label>Name <input name="name" required maxlength="255" pattern="[a-z0-9]+([._\\-][a-z0-9]+)*"></label>
<label>Description <input name="description" maxlength="1024"></label>
<fieldset><legend>Repository access</legend><label><input type="checkbox" name="action" value="pull" checked> pull</label>
<label><input type="checkbox" name="action" value="push"> push</label></fieldset>
<button type="submit" id="create-robot">Create robot</button></form>`,
  );
}

export function errorPage(f: Frame, status: number, message: string): Html {
  return layout(`Error ${status}`, f, html`<p class="error" role="alert">${message}</p><p><a href="/projects">Back to projects</a></p>`);
}
