"""Build: protobuf/gRPC stubs from src/kcore/store/rpc/pb/*.proto and the
Cython kernels in src/kcore/_native/ (every *.pyx there is an extension)."""
import glob
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "src")


def generate_protos() -> None:
    """Generate *_pb2.py / *_pb2_grpc.py next to the .proto files (idempotent)."""
    from grpc_tools import protoc
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    for proto in sorted(glob.glob(os.path.join(SRC, "kcore", "store", "rpc", "pb", "*.proto"))):
        rel = os.path.relpath(proto, SRC)
        out = proto[: -len(".proto")] + "_pb2.py"
        if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(proto):
            continue
        args = ["protoc", f"-I{SRC}", f"-I{include}", f"--python_out={SRC}",
                f"--grpc_python_out={SRC}", rel]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed for {rel}")


def native_extensions() -> list:
    from Cython.Build import cythonize
    import numpy

    exts = []
    for pyx in sorted(glob.glob(os.path.join("src", "kcore", "_native", "*.pyx"))):
        name = "kcore._native." + os.path.basename(pyx)[:-4]
        libs = []
        # a kernel declares the C libraries it links in a first-line comment: "# libs: nghttp2"
        with open(pyx) as fh:
            first = fh.readline()
        if first.startswith("# libs:"):
            libs = first.split(":", 1)[1].split()
        exts.append(Extension(name, [pyx], include_dirs=[numpy.get_include()],
                              libraries=libs, extra_compile_args=["-O3"]))
    return cythonize(exts, language_level=3, quiet=True)


generate_protos()
setup(ext_modules=native_extensions())
