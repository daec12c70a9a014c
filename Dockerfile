# syntax=docker/dockerfile:1
# ledgerd: a static binary on a distroless base, run as a non-root user.

FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off: a static binary that needs no libc in the final image.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/ledgerd ./cmd/ledgerd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ledgerd /ledgerd
# uid 65532 (nonroot): nothing in the image runs as root.
USER 65532:65532
ENV LEDGER_HTTP_ADDR=0.0.0.0:8080 \
    LEDGER_DATA_DIR=/tmp/ledgerd
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["/ledgerd", "healthcheck"]
ENTRYPOINT ["/ledgerd"]
