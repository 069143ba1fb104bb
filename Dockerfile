# One image for every role; the role is chosen with --role (or FLEETBOT_ROLE when no --role is given).
# test/image.test.ts reproduces the runtime stage without Docker, from its COPY, ENV, RUN npm ci,
# ENTRYPOINT, CMD and HEALTHCHECK lines: a COPY it does not know how to reproduce fails it.

# Build: TypeScript compiles src/ to dist/ (devDependencies are needed here, and only here).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.ts ./scripts/
COPY src ./src
RUN npm run build

# Runtime: production dependencies and the compiled modules, nothing that builds or tests.
FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# No optional packages: through an optional peer of bull-board's valibot, --omit=dev alone would keep
# TypeScript (30 MB, compiler binary and all); the only other ones are msgpackr's native decoder, and
# BullMQ only ever encodes with msgpackr. So no install script either: msgpackr-extract was the only
# production package with one.
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Stack traces of a fatal log line name src/*.ts lines (dist/ carries its source maps).
ENV NODE_OPTIONS=--enable-source-maps
# The process writes this heartbeat and the health check reads it (src/heartbeat.ts), so the check
# follows whatever roles --role or FLEETBOT_ROLE started, and whichever ports they bound.
ENV FLEETBOT_HEARTBEAT_FILE=/tmp/fleetbot-heartbeat.json
USER node
# Starting takes a few seconds (Redis, Telegram's getMe and webhook); the check itself has 4 s per server.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["node", "dist/healthcheck.js"]
ENTRYPOINT ["node", "dist/main.js"]
CMD ["--role", "all"]
