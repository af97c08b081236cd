/**
 * @module console/backend
 * What the console needs from the registry, as plain views: the registry implements this
 * (registry/console-backend.ts) with its own user store and authorization, so the console never
 * decides on its own who may see or change what. `viewer` undefined is an anonymous visitor.
 */

/** A logged-in console user (admins and users; robots cannot log in). */
export interface ConsoleUser {
  name: string;
  admin: boolean;
}

export type Viewer = ConsoleUser | undefined;

export interface ProjectView {
  name: string;
  public: boolean;
  repoCount: number;
  createdAt: number;
}

export interface RepositoryView {
  /** Full name, `<project>/<repo…>`. */
  name: string;
  artifactCount: number;
  pullCount: number;
  updatedAt: number;
}

export interface ArtifactView {
  digest: string;
  mediaType: string;
  size: number;
  pushedAt: number;
  tags: string[];
  /** The digest this artifact refers to (an OCI 1.1 referrer, e.g. a Nydus image of its source). */
  subject?: string;
}

export interface RobotView {
  id: number;
  name: string;
  description: string;
  disabled: boolean;
  /** Unix seconds, -1 = never. */
  expiresAt: number;
  /** `<project>: pull, push` per permission. */
  scopes: string[];
  createdAt: number;
}

export interface NewRobot {
  project: string;
  name: string;
  description: string;
  /** Repository actions granted in the project: `pull`, `push`. */
  actions: string[];
}

export interface ConsoleBackend {
  /**
   * Checks a login (limited and audited like the registry's own Basic logins). UNAUTHENTICATED for
   * wrong credentials, RESOURCE_EXHAUSTED while locked out, PERMISSION_DENIED for a robot account.
   */
  login(username: string, password: string, source: string | undefined): Promise<ConsoleUser>;
  /** The user behind a session now (undefined once deleted): rights are re-read on every request. */
  user(name: string): Promise<ConsoleUser | undefined>;
  /** The projects `viewer` may see. */
  projects(viewer: Viewer): Promise<ProjectView[]>;
  /** NOT_FOUND when `viewer` may not see it (whether or not it exists). */
  project(viewer: Viewer, name: string): Promise<ProjectView>;
  createProject(viewer: Viewer, name: string, isPublic: boolean): Promise<void>;
  repositories(viewer: Viewer, project: string): Promise<RepositoryView[]>;
  /** NOT_FOUND when `viewer` may not pull `repo`. */
  artifacts(viewer: Viewer, repo: string): Promise<ArtifactView[]>;
  robots(viewer: Viewer): Promise<RobotView[]>;
  /** The new robot's full name and its secret — the only time the secret is available. */
  createRobot(viewer: Viewer, r: NewRobot): Promise<{ name: string; secret: string }>;
  setRobotDisabled(viewer: Viewer, id: number, disabled: boolean): Promise<void>;
}
