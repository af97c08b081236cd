import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PEER_TRANSITIONS, transition, type PeerEventName, type PeerStateName } from './state.js';

const STATES: PeerStateName[] = ['pending', 'running', 'backToSource', 'succeeded', 'failed', 'leave'];

test('peer transitions: the table decides, nothing else', () => {
  // [event, from, expected state afterwards] — one row per interesting case.
  const cases: Array<[PeerEventName, PeerStateName, PeerStateName]> = [
    ['download', 'pending', 'running'],
    ['download', 'running', 'running'],
    ['download', 'backToSource', 'backToSource'], // keeps downloading from the source
    ['download', 'succeeded', 'succeeded'],
    ['downloadBackToSource', 'running', 'backToSource'],
    ['downloadBackToSource', 'failed', 'backToSource'], // gave up on parents, fell back by itself
    ['downloadBackToSource', 'leave', 'leave'],
    ['downloadSucceeded', 'pending', 'succeeded'], // empty task
    ['downloadSucceeded', 'backToSource', 'succeeded'],
    ['downloadSucceeded', 'failed', 'failed'], // never succeeds without going back to the source
    ['downloadSucceeded', 'leave', 'leave'],
    ['downloadFailed', 'succeeded', 'failed'],
    ['downloadFailed', 'leave', 'leave'],
  ];
  for (const [event, from, to] of cases) {
    const peer = { state: from };
    const moved = transition(peer, event);
    assert.equal(peer.state, to, `${event} in ${from}`);
    assert.equal(moved, PEER_TRANSITIONS[event].from.includes(from), `${event} in ${from} reported`);
  }
  for (const from of STATES) {
    const peer = { state: from };
    assert.equal(transition(peer, 'leave'), true);
    assert.equal(peer.state, 'leave');
  }
});
