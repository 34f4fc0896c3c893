import type { MiddlewareHandler } from 'hono';
import type { Env } from '../../src/env.js';
import { GatewayError } from '../../src/errors.js';
import { RouteClassifier } from '../../src/limits/classes.js';
import { principalKey } from '../../src/limits/keys.js';
import { definePolicy } from '../types.js';
import { rateLimitOptions } from './schema.js';

/**
 * Budgets per principal and route class (thumbnails, uploads, api, and any the config adds), in memory
 * or shared through Redis. Every response on a limited route carries the draft-ietf-httpapi-ratelimit-headers-10
 * fields; a request past its budget gets 429 in Immich's error shape with `Retry-After`.
 */
export const rateLimit = definePolicy({
  name: 'rate-limit',
  phase: 'rate-limit',
  options: rateLimitOptions,
  create(options, { deps }) {
    const { keyPrefix, onStoreError, insuranceDivisor, storeTimeoutMs } = options;
    const classifier = new RouteClassifier(
      {
        classes: options.classes,
        fallback: 'api',
        clients: options.clients,
        webUi: options.webUi,
        store: { keyPrefix, onStoreError, insuranceDivisor, storeTimeoutMs },
        configPath: 'policies.rate-limit',
      },
      deps,
    );
    const { metrics } = deps;
    const headers = options.headers;

    const middleware: MiddlewareHandler<Env> = async (c, next) => {
      const cls = classifier.classify(c.var.upstream.method, c.var.route?.route, c.var.routeLabel);
      if (!cls) return next();
      c.set('routeClass', cls.name);
      const principal = c.var.principal;
      const own = cls.perClient.get(principal.client);
      const limit = own === undefined ? cls.limit : own;
      if (!limit) return next();
      const outcome = await limit.limiter.consume(principalKey(principal, c.var.clientIp));
      const resetSeconds = Math.max(0, Math.ceil(outcome.resetMs / 1000));
      if (headers) {
        const extra = c.var.responseHeaders;
        extra['ratelimit-policy'] = limit.policyField;
        extra['ratelimit'] = `"${cls.name}";r=${outcome.remaining};t=${resetSeconds}`;
      }
      if (outcome.via === 'insurance' || outcome.via === 'open') c.var.notes.rateLimitStore = outcome.via;
      if (!outcome.allowed) {
        metrics.rateLimited.inc({ class: cls.name, client: principal.client });
        c.var.notes.rateLimited = cls.name;
        throw new GatewayError(429, 'RATE_LIMITED', 'Too many requests', { 'Retry-After': String(Math.max(1, resetSeconds)) });
      }
      return next();
    };
    return middleware;
  },
});
