# One image for every role; the role is chosen with --role (or FLEETBOT_ROLE).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
USER node
ENTRYPOINT ["npx", "tsx", "src/main.ts"]
CMD ["--role", "all"]
