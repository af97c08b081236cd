/**
 * @module build
 * `ferry build`: Dockerfile → OCI image, Nydus image or both, with buildah as the build engine and
 * the conversion pipeline of convert/ turning its layers into RAFS blobs.
 */
export { buildImage, type BuildOptions, type BuildResult, type BuildOutput, type BuildProgress } from './build.js';
export { baseImageOf } from './dockerfile.js';
export { runBuildah, buildahPrecondition, diagnose as diagnoseBuildah, storageArgs, type BuildahStorage } from './buildah.js';
