import { test } from 'node:test';
import assert from 'node:assert/strict';
import { baseImageOf } from './dockerfile.js';

test('the base of the last stage, with global ARG defaults and --build-arg overrides', () => {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: Dockerfile variables, not templates
  const df = ['# syntax=docker/dockerfile:1', 'ARG BASE=reg.example/lib/base:v1', 'FROM ${BASE} AS build', 'RUN make', ''].join('\n');
  assert.equal(baseImageOf(df), 'reg.example/lib/base:v1');
  assert.equal(baseImageOf(df, { buildArgs: new Map([['BASE', 'other/img:2']]) }), 'other/img:2');
});

test('stages built on stages lead to the external image; --target picks the stage; scratch has no base', () => {
  const df = [
    'FROM --platform=linux/amd64 golang:1.22 AS builder',
    'RUN go build \\',
    '  -o /app .',
    'FROM builder AS test',
    'FROM scratch AS final',
    'COPY --from=builder /app /app',
  ].join('\n');
  assert.equal(baseImageOf(df), undefined);
  assert.equal(baseImageOf(df, { target: 'test' }), 'golang:1.22');
  assert.equal(baseImageOf(df, { target: 'BUILDER' }), 'golang:1.22');
});

test('a Dockerfile without FROM, an unknown target or an empty FROM is a clear error', () => {
  assert.throws(() => baseImageOf('RUN true\n'), /no FROM instruction/);
  assert.throws(() => baseImageOf('FROM a AS x\n', { target: 'y' }), /no stage named y/);
  assert.throws(() => baseImageOf('FROM --platform=linux/amd64\n'), /FROM without an image/);
});

test('a variable with a default in the FROM line', () => {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a Dockerfile variable, not a template
  assert.equal(baseImageOf('FROM ${IMG:-busybox:1}\n'), 'busybox:1');
  assert.equal(baseImageOf('ARG TAG=3\nFROM alpine:$TAG\n'), 'alpine:3');
});
