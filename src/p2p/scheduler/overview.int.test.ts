/** The scheduler's overview (read by the web console) sits behind the preheat job API's tokens. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startScheduler } from './index.js';
import { OVERVIEW_PATH, type SchedulerOverview } from '../common/index.js';

test('GET /oapi/v1/overview answers only with a preheat token', async () => {
  const s = await startScheduler({ listen: '127.0.0.1:0', config: { preheat: { tokens: ['pat-overview'] } } });
  try {
    assert.equal((await fetch(`${s.url}${OVERVIEW_PATH}`)).status, 401);
    assert.equal((await fetch(`${s.url}${OVERVIEW_PATH}`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
    const r = await fetch(`${s.url}${OVERVIEW_PATH}`, { headers: { authorization: 'Bearer pat-overview' } });
    assert.equal(r.status, 200);
    assert.deepEqual((await r.json()) as SchedulerOverview, { hosts: [], tasks: [], traffic: { fromPeers: 0, fromSource: 0 } });
  } finally {
    await s.close();
  }
});
