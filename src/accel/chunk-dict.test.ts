import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseReference } from '../remote/index.js';
import { pickChunkDict, projectOf } from './chunk-dict.js';
import type { TaskView } from './protocol.js';

const D = (c: string): string => `sha256:${c.repeat(64)}`;

function task(target: string, digest: string, status: TaskView['status'] = 'COMPLETED'): TaskView {
  return {
    id: target,
    created: '',
    finished: '',
    source: target.replace(/-nydus$/, ''),
    source_size: 0,
    target_size: 0,
    status,
    reason: '',
    target,
    target_digest: digest,
    source_digest: '',
    attempts: 1,
    next_run: 0,
    running: false,
    worker: '',
  };
}

test('chunk dict: the newest completed conversions of the same registry and project, pinned, distinct, bounded', () => {
  const target = parseReference('reg.local:5000/team/app:v3-nydus');
  const tasks = [
    task('reg.local:5000/team/app:v2-nydus', D('a')),
    task('reg.local:5000/team/app:v2b-nydus', D('a')), // same image again
    task('reg.local:5000/other/app:v1-nydus', D('b')), // another project
    task('elsewhere:5000/team/app:v1-nydus', D('c')), // another registry
    task('reg.local:5000/team/broken:v1-nydus', '', 'FAILED'),
    task('reg.local:5000/team/queued:v1-nydus', '', 'PROCESSING'),
    task('reg.local:5000/team/base:v1-nydus', D('d')),
    task('reg.local:5000/team/db:v1-nydus', D('e')),
    task('reg.local:5000/team/old:v1-nydus', D('f')),
  ];
  assert.deepEqual(pickChunkDict(tasks, target, 3), [
    `reg.local:5000/team/app@${D('a')}`,
    `reg.local:5000/team/base@${D('d')}`,
    `reg.local:5000/team/db@${D('e')}`,
  ]);
  assert.deepEqual(pickChunkDict(tasks, target, 1), [`reg.local:5000/team/app@${D('a')}`]);
  assert.deepEqual(pickChunkDict([], target, 4), []);
  assert.equal(projectOf('team/sub/app'), 'team');
});
