package ociimage

import "io/fs"

// The product image, as the Dockerfile's final stage makes it: distroless
// static's non-root user, the two static programs, /agent the entrypoint,
// no shell. A test holds the two to the same user, entrypoint, command and
// files.
const (
	ProductUser    = "65532:65532"
	AgentPath      = "/agent"
	ControllerPath = "/controller"
)

// Product is the product image named name, holding the static agent and
// controller binaries (`make build`).
func Product(name string, agent, controller []byte) Image {
	return Image{
		Name: name,
		Files: append(Base(),
			File{Path: AgentPath, Mode: 0o755, Data: agent},
			File{Path: ControllerPath, Mode: 0o755, Data: controller},
		),
		User:       ProductUser,
		Entrypoint: []string{AgentPath},
		Cmd:        []string{"help"},
	}
}

// Base is what distroless static gives a static program and nothing more:
// the user database naming root, nobody and nonroot (65532), and a sticky,
// world-writable /tmp.
func Base() []File {
	return []File{
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}
