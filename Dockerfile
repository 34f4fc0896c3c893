# syntax=docker/dockerfile:1
# immich-gateway. Node 24 is the active LTS line (until April 2028).
#   docker build -t immich-gateway .
#   docker run -p 2283:8080 -e IMMICH_URL=http://immich-server:2283 -v gateway-data:/data immich-gateway
# The keys file and the secrets file live in the /data volume; the CLI is on the PATH:
#   docker compose exec gateway immich-gateway keys add --name frame --scopes photo-frame ...
# test/deploy/dockerfile.test.ts runs this file's runtime steps without a Docker daemon.

# Build stage: compile TypeScript with the full dev toolchain, then drop the dev dependencies.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY policies ./policies
RUN npm run build && npm prune --omit=dev

# Runtime stage: production dependencies and compiled code only, as the unprivileged user `node`.
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    PORT=8080 \
    HOST=0.0.0.0 \
    METRICS_HOST=0.0.0.0 \
    GATEWAY_KEYS_FILE=/data/keys.yaml
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY config ./config
RUN mkdir -p /data && chown node:node /data && ln -s /app/bin/immich-gateway.js /usr/local/bin/immich-gateway
USER node
VOLUME /data
EXPOSE 8080 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# Exec form: node is PID 1 and receives SIGTERM itself (no shell or npm in between), drains, exits 0.
ENTRYPOINT ["node", "/app/bin/immich-gateway.js"]
CMD ["serve"]
