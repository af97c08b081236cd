/**
 * @module cli/rafs
 * `ferry rafs <create|merge|inspect|check|unpack> …` — the role of nydus-image. Each subcommand
 * lives in `src/cli/rafs/<name>.ts` (exporting `run(argv)`) and is loaded on demand.
 */
const SUBCOMMANDS: ReadonlyArray<readonly [string, string]> = [
  ['create', 'build a data blob and bootstrap from a layer tar or a directory'],
  ['merge', 'merge layer bootstraps into one image bootstrap'],
  ['inspect', 'print superblock, blobs, counts and the file tree of a bootstrap'],
  ['check', 'validate a bootstrap (and every chunk digest when blobs are given)'],
  ['unpack', 'rebuild the file tree (directory or tar) from a bootstrap and its blobs'],
];

function usage(): string {
  return `usage: ferry rafs <command> [options]\n\ncommands:\n${SUBCOMMANDS.map(([n, s]) => `  ${n.padEnd(8)} ${s}`).join('\n')}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help') {
    process.stdout.write(usage());
    return sub === undefined ? 2 : 0;
  }
  if (!SUBCOMMANDS.some(([n]) => n === sub)) {
    process.stderr.write(`ferry rafs: unknown command ${JSON.stringify(sub)}\n\n${usage()}`);
    return 2;
  }
  // biome-ignore lint/suspicious/noConfusingVoidType: subcommand modules' run() returns Promise<void> or Promise<number>
  let mod: { run(argv: string[]): Promise<number | void> };
  try {
    mod = (await import(`./rafs/${sub}.js`)) as typeof mod;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(`rafs/${sub}.js`)) {
      process.stderr.write(`ferry rafs: ${sub} is not available in this build\n`);
      return 2;
    }
    throw err;
  }
  const code = await mod.run(rest);
  return typeof code === 'number' ? code : 0;
}
