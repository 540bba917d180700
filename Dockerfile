# syntax=docker/dockerfile:1
# The one image every meshfed component runs from: `meshfed global-cp`,
# `meshfed zone-cp`, `meshfed gateway`, the injected sidecar (`meshfed-proxy`,
# the bundled lean entry of `meshfed proxy`) and its `meshfed capture` init
# container, and the certificate bootstrap Job
# (deploy/scripts/cert-bootstrap.sh). Build from the repository root:
#   docker build -t meshfed:0.1.0 .
# test/deploy/dockerfile.test.ts checks that what this file copies exists,
# is not hidden by .dockerignore, and is enough to build and run.

ARG NODE_IMAGE=node:20-slim

# ---- build: compile TypeScript with the dev dependencies ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY core ./core
COPY global-cp ./global-cp
COPY zone-cp ./zone-cp
COPY eastwest-gateway ./eastwest-gateway
COPY proxy ./proxy
COPY vm-agent ./vm-agent
COPY cli ./cli
# `npm run build`: tsc, then the sidecar bundle (dist/cli/meshfed-proxy.cjs,
# what `meshfed-proxy` runs) by this script.
COPY scripts/bundle-sidecar.ts ./scripts/
RUN npm run build

# ---- runtime: production dependencies, the built dist/, the .proto files ----
FROM ${NODE_IMAGE}
# iptables: the sidecar's init container installs the traffic capture rules.
# openssl, curl, jq: the certificate bootstrap Job (no kubectl in the image).
RUN apt-get update \
  && apt-get install -y --no-install-recommends iptables openssl curl jq ca-certificates \
  && rm -rf /var/lib/apt/lists/* \
  && groupadd --gid 10001 meshfed \
  && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin meshfed
WORKDIR /opt/meshfed
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
# Loaded at run time from <package root>/core/proto (core/grpc/proto.ts).
COPY core/proto ./core/proto
# Served by global-cp's dashboard from <package root>/global-cp/dashboard/assets.
COPY global-cp/dashboard/assets ./global-cp/dashboard/assets
COPY deploy/scripts/cert-bootstrap.sh /usr/local/bin/meshfed-cert-bootstrap
# meshfed-proxy, the command the webhook injects: the sidecar bundle
# (scripts/bundle-sidecar.ts), which loads prom-client from node_modules here.
RUN chmod 0755 dist/cli/main.js dist/cli/meshfed-proxy.cjs /usr/local/bin/meshfed-cert-bootstrap \
  && ln -s /opt/meshfed/dist/cli/main.js /usr/local/bin/meshfed \
  && ln -s /opt/meshfed/dist/cli/meshfed-proxy.cjs /usr/local/bin/meshfed-proxy \
  && mkdir -p /var/lib/meshfed \
  && chown 10001:10001 /var/lib/meshfed
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 5681 5685 5682 5678 15017 15443 15021
ENTRYPOINT ["meshfed"]
CMD ["--help"]
