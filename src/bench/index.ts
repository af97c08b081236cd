/**
 * @module bench
 * `ferry bench`: HelloBench-style start-up and distribution benchmarks (harness, workloads,
 * modes) and the report (results.json, Markdown, HTML with SVG/PNG charts). The test/bench
 * environment (containerd, netns, rootfs, images) is in ./env.
 */
export { runBench, summarizeRuns, machineInfo, choosePullClient, type BenchOptions } from './run.js';
export {
  writeReport,
  buildCharts,
  renderHtml,
  renderMarkdown,
  screenshot,
  dumpDom,
  chromiumBinary,
  type WrittenReport,
} from './report/index.js';
export { WORKLOADS, findWorkload, prepareWorkloadImage, type Workload } from './workloads.js';
export { DRIVERS, modeAvailability, hostsToml, PULL_CLIENTS, lazyPullClient, rpullArgs, type PullClient } from './modes.js';
export { summarize, percentile, median, type Summary } from './stats.js';
export {
  ALL_MODES,
  ALL_REGISTRIES,
  MODE_LABELS,
  REGISTRY_LABELS,
  type RegistryKind,
  type BenchResults,
  type ModeId,
  type RunResult,
  type GroupSummary,
  type WorkloadInfo,
} from './types.js';
export { findStargzDaemon, stargzDaemonArgs, STARGZ_DAEMON } from './estargz.js';
