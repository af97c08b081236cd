/**
 * @module console/console
 * The web console's door, mounted by the registry server under `/`: a route table of server-rendered
 * pages. A login form sets a session cookie (HttpOnly, SameSite=Strict); every POST must carry the
 * session's CSRF token (the login form a double-submit token of its own) and, when the browser sends
 * one, an Origin equal to the Host. Pages are never cached; a strict Content-Security-Policy allows
 * only the console's own stylesheet and script.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { FerryError, type Clock } from '../core/index.js';
import { Router, readBody, statusOf } from '../httpx/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { LIVE_SCRIPT, STYLE } from './assets.js';
import type { ConsoleBackend, ConsoleUser } from './backend.js';
import type { Html } from './html.js';
import {
  artifactsTable,
  benchPage,
  conversionsPage,
  conversionsTable,
  errorPage,
  loginPage,
  projectPage,
  projectsPage,
  p2pPage,
  repositoryPage,
  robotsPage,
  type Frame,
} from './pages.js';
import { cookie, newToken, parseCookies, sameToken, type Session, SessionStore } from './session.js';

export const SESSION_COOKIE = 'ferry_session';
export const LOGIN_CSRF_COOKIE = 'ferry_login_csrf';
const FORM_LIMIT = 64 * 1024;
const CSP =
  "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

export interface ConsoleOptions {
  backend: ConsoleBackend;
  clock?: Clock;
  log?: Logger;
  /** Session lifetimes (defaults: 30 min idle, 12 h absolute). */
  idleMs?: number;
  maxAgeMs?: number;
}

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  session: Session | undefined;
  viewer: ConsoleUser | undefined;
  /** The decoded form body of a POST (after the CSRF check). */
  form: URLSearchParams;
}

/** Whether the console answers `path` (everything else stays with the registry's APIs). */
export function isConsolePath(path: string): boolean {
  return /^\/$|^\/(login|logout|projects|robots|conversions|p2p|bench|console)(\/|$)/.test(path);
}

export class Console {
  readonly sessions: SessionStore;
  readonly #backend: ConsoleBackend;
  readonly #log: Logger;
  readonly #routes: Router<Ctx>;

  constructor(o: ConsoleOptions) {
    this.#backend = o.backend;
    this.#log = (o.log ?? silentLogger()).child({ component: 'console' });
    this.sessions = new SessionStore({ clock: o.clock, idleMs: o.idleMs, maxAgeMs: o.maxAgeMs });
    this.#routes = this.#table();
  }

  owns(path: string): boolean {
    return isConsolePath(path);
  }

  /** Answers one console request; failures become an HTML error page with the error's status. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const ctx: Ctx = { req, res, url, session: undefined, viewer: undefined, form: new URLSearchParams() };
    try {
      ctx.session = this.sessions.get(parseCookies(req.headers.cookie).get(SESSION_COOKIE));
      if (ctx.session) {
        ctx.viewer = await this.#backend.user(ctx.session.user);
        if (!ctx.viewer) {
          this.sessions.delete(ctx.session.id);
          ctx.session = undefined;
        }
      }
      const method = req.method ?? 'GET';
      if (method === 'POST') await this.#readForm(ctx);
      await this.#routes.dispatch(method, url.pathname, ctx);
    } catch (err) {
      const e = FerryError.is(err) ? err : new FerryError('INTERNAL', 'internal error', { cause: err });
      const status = statusOf(e);
      if (status >= 500) this.#log.error({ err, path: url.pathname }, 'console request failed');
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return;
      }
      if (!req.complete) res.setHeader('connection', 'close');
      this.#page(res, status, errorPage(this.#frame(ctx), status, status >= 500 ? 'internal error' : e.message));
    }
  }

  /** Reads a urlencoded form and checks where it comes from and its CSRF token (before any handler runs). */
  async #readForm(ctx: Ctx): Promise<void> {
    const { req } = ctx;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let host = '';
      try {
        host = new URL(origin).host;
      } catch {}
      if (host !== req.headers.host) throw new FerryError('PERMISSION_DENIED', 'cross-origin form refused');
    } else if (origin === 'null') throw new FerryError('PERMISSION_DENIED', 'cross-origin form refused');
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/x-www-form-urlencoded')
      throw new FerryError('INVALID_ARGUMENT', 'expected a form (application/x-www-form-urlencoded)');
    ctx.form = new URLSearchParams((await readBody(req, FORM_LIMIT)).toString('utf8'));
    const sent = ctx.form.get('_csrf') ?? undefined;
    const want = ctx.url.pathname === '/login' ? parseCookies(req.headers.cookie).get(LOGIN_CSRF_COOKIE) : ctx.session?.csrf;
    if (!sameToken(sent, want)) throw new FerryError('PERMISSION_DENIED', 'missing or stale form token: reload the page and try again');
  }

  #frame(ctx: Ctx): Frame {
    return { viewer: ctx.viewer, csrf: ctx.session?.csrf ?? '' };
  }

  #secure(req: IncomingMessage): boolean {
    return (req.socket as TLSSocket).encrypted === true;
  }

  #page(res: ServerResponse, status: number, body: Html, headers: Record<string, string | string[]> = {}): void {
    const text = body.text;
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'same-origin',
      ...headers,
    });
    res.end(text);
  }

  #redirect(res: ServerResponse, to: string, headers: Record<string, string | string[]> = {}): void {
    res.writeHead(303, { location: to, 'content-length': 0, 'cache-control': 'no-store', ...headers });
    res.end();
  }

  #asset(res: ServerResponse, type: string, text: string): void {
    res.writeHead(200, {
      'content-type': type,
      'content-length': Buffer.byteLength(text),
      'cache-control': 'max-age=300',
      'x-content-type-options': 'nosniff',
    });
    res.end(text);
  }

  #requireUser(ctx: Ctx): ConsoleUser {
    if (!ctx.viewer) throw new FerryError('UNAUTHENTICATED', 'log in first');
    return ctx.viewer;
  }

  #loginForm(ctx: Ctx, status: number, error?: string): void {
    const token = newToken();
    const c = cookie(LOGIN_CSRF_COOKIE, token, { maxAgeS: 3600, secure: this.#secure(ctx.req) });
    this.#page(ctx.res, status, loginPage(token, error), { 'set-cookie': c });
  }

  async #login(ctx: Ctx): Promise<void> {
    const username = ctx.form.get('username') ?? '';
    const password = ctx.form.get('password') ?? '';
    let user: ConsoleUser;
    try {
      user = await this.#backend.login(username, password, ctx.req.socket.remoteAddress);
    } catch (err) {
      if (!FerryError.is(err) || !['UNAUTHENTICATED', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED'].includes(err.code)) throw err;
      this.#loginForm(ctx, statusOf(err), err.code === 'UNAUTHENTICATED' ? 'Wrong user name or password.' : err.message);
      return;
    }
    if (ctx.session) this.sessions.delete(ctx.session.id);
    const s = this.sessions.create(user.name);
    const secure = this.#secure(ctx.req);
    this.#log.info({ user: user.name }, 'console login');
    this.#redirect(ctx.res, '/projects', {
      'set-cookie': [
        cookie(SESSION_COOKIE, s.id, { maxAgeS: Math.floor(this.sessions.maxAgeMs / 1000), secure }),
        cookie(LOGIN_CSRF_COOKIE, '', { maxAgeS: 0, secure }),
      ],
    });
  }

  async #projects(ctx: Ctx, status = 200, error?: string): Promise<void> {
    this.#page(ctx.res, status, projectsPage(this.#frame(ctx), await this.#backend.projects(ctx.viewer), error));
  }

  async #createProject(ctx: Ctx): Promise<void> {
    this.#requireUser(ctx);
    const name = ctx.form.get('name') ?? '';
    try {
      await this.#backend.createProject(ctx.viewer, name, ctx.form.get('public') === 'true');
    } catch (err) {
      if (!FerryError.is(err) || !['INVALID_ARGUMENT', 'ALREADY_EXISTS', 'PERMISSION_DENIED'].includes(err.code)) throw err;
      await this.#projects(ctx, statusOf(err), err.message);
      return;
    }
    this.#redirect(ctx.res, `/projects/${encodeURIComponent(name)}`);
  }

  async #robots(ctx: Ctx, status = 200, created?: { name: string; secret: string }, error?: string): Promise<void> {
    this.#requireUser(ctx);
    const [robots, projects] = await Promise.all([this.#backend.robots(ctx.viewer), this.#backend.projects(ctx.viewer)]);
    this.#page(ctx.res, status, robotsPage(this.#frame(ctx), robots, projects, created, error));
  }

  async #createRobot(ctx: Ctx): Promise<void> {
    this.#requireUser(ctx);
    const f = ctx.form;
    let created: { name: string; secret: string };
    try {
      created = await this.#backend.createRobot(ctx.viewer, {
        project: f.get('project') ?? '',
        name: f.get('name') ?? '',
        description: f.get('description') ?? '',
        actions: f.getAll('action'),
      });
    } catch (err) {
      if (!FerryError.is(err) || !['INVALID_ARGUMENT', 'ALREADY_EXISTS', 'NOT_FOUND'].includes(err.code)) throw err;
      await this.#robots(ctx, statusOf(err), undefined, err.message);
      return;
    }
    // Answered in place, never redirected: the secret exists only in this one response.
    await this.#robots(ctx, 201, created);
  }

  async #conversions(ctx: Ctx, status = 200, error?: string): Promise<void> {
    const view = await this.#backend.conversions(ctx.viewer);
    const f = this.#frame(ctx);
    if (ctx.url.searchParams.get('fragment') === 'tasks') this.#page(ctx.res, 200, conversionsTable(f, view));
    else this.#page(ctx.res, status, conversionsPage(f, view, error));
  }

  async #retryConversion(ctx: Ctx, id: string): Promise<void> {
    this.#requireUser(ctx);
    try {
      await this.#backend.retryConversion(ctx.viewer, id);
    } catch (err) {
      if (!FerryError.is(err) || !['FAILED_PRECONDITION', 'PERMISSION_DENIED', 'UNAVAILABLE'].includes(err.code)) throw err;
      await this.#conversions(ctx, statusOf(err), err.message);
      return;
    }
    this.#redirect(ctx.res, '/conversions');
  }

  #table(): Router<Ctx> {
    return new Router<Ctx>({ notFound: (_m, path) => new FerryError('NOT_FOUND', `no page ${path.slice(0, 200)}`) })
      .get('/', ({ res }) => this.#redirect(res, '/projects'))
      .get('/console/style.css', ({ res }) => this.#asset(res, 'text/css; charset=utf-8', STYLE))
      .get('/console/live.js', ({ res }) => this.#asset(res, 'text/javascript; charset=utf-8', LIVE_SCRIPT))
      .get('/login', (ctx) => (ctx.viewer ? this.#redirect(ctx.res, '/projects') : this.#loginForm(ctx, 200)))
      .post('/login', (ctx) => this.#login(ctx))
      .post('/logout', (ctx) => {
        if (ctx.session) this.sessions.delete(ctx.session.id);
        this.#redirect(ctx.res, '/login', { 'set-cookie': cookie(SESSION_COOKIE, '', { maxAgeS: 0, secure: this.#secure(ctx.req) }) });
      })
      .get('/projects', (ctx) => this.#projects(ctx))
      .post('/projects', (ctx) => this.#createProject(ctx))
      .get('/projects/:project', async (ctx, a) => {
        const project = await this.#backend.project(ctx.viewer, a.project!);
        const [repos, policies] = await Promise.all([
          this.#backend.repositories(ctx.viewer, project.name),
          this.#backend.webhookPolicies(ctx.viewer, project.name),
        ]);
        this.#page(ctx.res, 200, projectPage(this.#frame(ctx), project, repos, policies));
      })
      .get('/projects/:project/repositories/:repo', async (ctx, a) => {
        const repo = `${a.project}/${a.repo}`;
        const artifacts = await this.#backend.artifacts(ctx.viewer, repo);
        if (ctx.url.searchParams.get('fragment') === 'artifacts') this.#page(ctx.res, 200, artifactsTable(artifacts));
        else this.#page(ctx.res, 200, repositoryPage(this.#frame(ctx), repo, artifacts));
      })
      .get('/conversions', (ctx) => this.#conversions(ctx))
      .post('/conversions/:id/retry', (ctx, a) => this.#retryConversion(ctx, a.id!))
      .get('/p2p', async (ctx) => {
        this.#requireUser(ctx);
        this.#page(ctx.res, 200, p2pPage(this.#frame(ctx), await this.#backend.p2p(ctx.viewer)));
      })
      .get('/bench', async (ctx) => {
        this.#requireUser(ctx);
        this.#page(ctx.res, 200, benchPage(this.#frame(ctx), await this.#backend.benchReport(ctx.viewer)));
      })
      .get('/robots', (ctx) => this.#robots(ctx))
      .post('/robots', (ctx) => this.#createRobot(ctx))
      .post('/robots/:id(\\d+)/:op(disable|enable)', async (ctx, a) => {
        this.#requireUser(ctx);
        await this.#backend.setRobotDisabled(ctx.viewer, Number(a.id), a.op === 'disable');
        this.#redirect(ctx.res, '/robots');
      });
  }
}
