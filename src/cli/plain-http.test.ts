import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { plainHttpFlag, plainHttpHosts, plainHttpHostsOption } from './plain-http.js';

const parse = (cmd: Command, argv: string[]): Record<string, unknown> => {
  cmd.exitOverride().parse(argv, { from: 'user' });
  return cmd.opts();
};

test('--source-plain-http and its old spelling --source-insecure set the same option; only the new one is in --help', () => {
  const make = (): Command => plainHttpFlag(new Command('x'), 'source-plain-http', 'plain HTTP source', ['source-insecure']);
  assert.equal(parse(make(), ['--source-plain-http']).sourcePlainHttp, true);
  assert.equal(parse(make(), ['--source-insecure']).sourcePlainHttp, true);
  assert.equal(parse(make(), []).sourcePlainHttp, undefined);
  const help = make().helpInformation();
  assert.match(help, /--source-plain-http/);
  assert.doesNotMatch(help, /insecure/);
});

test('--plain-http <host> and the old --insecure-registry <host> collect into one list; only the new one is in --help', () => {
  const make = (): Command => plainHttpHostsOption(new Command('x'), 'plain HTTP registry', 'insecure-registry');
  const o = parse(make(), ['--plain-http', 'a:5000', '--insecure-registry', 'b:5000', '--plain-http', 'c']);
  assert.deepEqual(plainHttpHosts(o, 'insecure-registry'), ['a:5000', 'c', 'b:5000']);
  assert.deepEqual(plainHttpHosts(parse(make(), []), 'insecure-registry'), []);
  const help = make().helpInformation();
  assert.match(help, /--plain-http <host>/);
  assert.doesNotMatch(help, /insecure/);
});
