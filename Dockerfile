# relight-sidecar container image.
#   docker build -t relight-sidecar:0.1.0 .
# Without a registry (CI here), build on a local stand-in for node:24-slim:
#   docker build --network host --build-arg BASE_IMAGE=$(deploy/images/node-standin.sh | tail -1) -t relight-sidecar .
# Run: mount the config at /etc/relight/relight.yaml (see README "Run it in a container").
ARG BASE_IMAGE=node:24-slim

# --- build: dev dependencies (TypeScript), compile sidecar/ only -------------------------------
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY scripts/build.mjs scripts/
COPY sidecar sidecar/
RUN node scripts/build.mjs && find dist \( -name "*.map" -o -name "*.d.ts" \) -delete

# --- production dependencies only --------------------------------------------------------------
FROM ${BASE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force

# --- runtime -----------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="relight-sidecar" \
      org.opencontainers.image.description="Scale-to-zero for stock Caddy: a forward_auth sidecar that wakes processes, containers and microVMs on request" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/relight/relight-sidecar" \
      org.opencontainers.image.documentation="https://github.com/relight/relight-sidecar#run-it-in-a-container"
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /src/node_modules node_modules/
COPY --from=build /src/dist/sidecar dist/sidecar/
COPY package.json ./
COPY caddy caddy/
# relight-sidecar on PATH (serve, check, health, snippet); /run/relight for unix sockets shared
# with Caddy through a volume, /var/lib/relight for state_dir; both writable by the node user.
RUN chmod 0755 dist/sidecar/main.js \
 && ln -s /app/dist/sidecar/main.js /usr/local/bin/relight-sidecar \
 && mkdir -p /etc/relight /run/relight /var/lib/relight \
 && chown node:node /run/relight /var/lib/relight
# Non-root (uid 1000 from the base image). To reach /var/run/docker.sock, add the socket's group:
# docker run --group-add "$(stat -c %g /var/run/docker.sock)" …
USER node
# Asks the running sidecar's /_relight/healthz on the configured listen address (no curl needed).
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 \
  CMD ["relight-sidecar", "health", "--config", "/etc/relight/relight.yaml", "--timeout", "5s"]
ENTRYPOINT ["relight-sidecar"]
CMD ["serve", "--config", "/etc/relight/relight.yaml"]
