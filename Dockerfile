# syntax=docker/dockerfile:1
#
# csr-agent: one image, two programs.
#
#   /agent        the pod-side agent (init, sidecar, probe); the entrypoint
#   /controller   the approver and signer
#
# One image rather than two targets: the agent and the controller are
# released, scanned and signed together, always at the same version, and a
# node that runs both pulls the shared layers once. Each container picks its
# program with `command`:
#
#   command: [/agent, sidecar]      # or init, probe
#   command: [/controller, run]
#
# The final stage is distroless static, non-root (65532), with no shell and
# no package manager: the binaries are static (CGO_ENABLED=0), so nothing
# else is needed. manifests/dockerfile_test.go checks these properties.
#
#   docker build --build-arg VERSION=v0.1.0 -t ghcr.io/csr-agent/csr-agent:v0.1.0 .

ARG GO_VERSION=1.26

# The builder runs on the build machine's platform and cross-compiles, which
# is much faster than emulating the target platform.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
COPY cmd/ cmd/
COPY internal/ internal/
# Modules and compiled packages live in cache mounts, reused across builds
# without landing in a layer (a separate `go mod download` step would cache
# nothing more: its result would be in the mount, not in its layer). The
# flags are those of `make build`: static, reproducible paths (-trimpath),
# stripped of symbol and debug tables (-s -w), which matters for the agent
# that every pod runs.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOFLAGS=-buildvcs=false \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/ ./cmd/agent ./cmd/controller

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/agent /agent
COPY --from=build /out/controller /controller
USER 65532:65532
ENTRYPOINT ["/agent"]
CMD ["help"]
