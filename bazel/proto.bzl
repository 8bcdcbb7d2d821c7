"""cc_proto_grpc_library: C++ protobuf and gRPC code from .proto files.

Runs Debian's system protoc (3.21) with grpc_cpp_plugin (1.51), offline, so no
BUILD file spells a protoc command line. Imports are resolved from the
workspace root (`import "api/google/rpc/status.proto";`) and /usr/include (the
well-known types).

    cc_proto_grpc_library(
        name = "cache_proto",
        srcs = ["cache.proto"],
        deps = ["//api/google/rpc:status_proto"],  # other cc_proto_grpc_library targets
        grpc = True,                                # services: *.grpc.pb.{h,cc} and mocks
    )

With import_root = "api", the .proto files are imported relative to api/
(`import "google/rpc/status.proto";`), as their originals are (REAPI,
googleapis): the file names in descriptors match the originals', and the
generated headers are included as "google/rpc/status.pb.h".
"""

def cc_proto_grpc_library(name, srcs, deps = [], grpc = True, visibility = None, import_root = None):
    outs = []
    hdrs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
        hdrs.append(base + ".pb.h")
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc", base + "_mock.grpc.pb.h"]
            hdrs += [base + ".grpc.pb.h", base + "_mock.grpc.pb.h"]

    # The .proto files of this target and its deps, for protoc's imports.
    native.filegroup(
        name = name + "_files",
        srcs = srcs + [d + "_files" for d in deps],
        visibility = visibility,
    )

    grpc_flags = ""
    if grpc:
        grpc_flags = ("--grpc_out=generate_mock_code=true:$(GENDIR) " +
                      "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin ")
    include_flags = "-I. "
    out_dir = "$(GENDIR)"
    if import_root:
        include_flags = "-I%s " % import_root
        out_dir = "$(GENDIR)/" + import_root
    native.genrule(
        name = name + "_gen",
        srcs = srcs + [name + "_files"],
        outs = outs,
        cmd = ("/usr/bin/protoc " + include_flags + "-I/usr/include --cpp_out=" + out_dir + " " +
               grpc_flags.replace("$(GENDIR)", out_dir) +
               " ".join(["$(location %s)" % s for s in srcs])),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = hdrs,
        deps = deps + ["//third_party:protobuf"] + (["//third_party:grpc"] if grpc else []),
        strip_include_prefix = ("/" + import_root) if import_root else None,
        visibility = visibility,
    )
