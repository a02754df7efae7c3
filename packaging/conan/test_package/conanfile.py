# Builds a C++ program (find_package(Pool), Pool::pool) and a C program (pkg-config pool)
# against the package, runs both, and checks that they link libpool the way `shared` says.
import io
import os

from conan import ConanFile
from conan.errors import ConanException
from conan.tools.build import can_run
from conan.tools.cmake import CMake, CMakeToolchain, cmake_layout


class LibpoolTestConan(ConanFile):
    settings = "os", "arch", "compiler", "build_type"
    generators = "CMakeDeps", "PkgConfigDeps", "VirtualRunEnv"
    test_type = "explicit"

    def requirements(self):
        self.requires(self.tested_reference_str)

    def layout(self):
        cmake_layout(self)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.user_presets_path = False  # no CMakeUserPresets.json written into the checkout
        tc.generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def test(self):
        if not can_run(self):
            return
        shared = bool(self.dependencies["libpool"].options.shared)
        for name in ("test_cpp", "test_c"):
            exe = os.path.join(self.cpp.build.bindir, name)
            self.run(exe, env="conanrun")
            out = io.StringIO()
            self.run(f"readelf -d {exe}", stdout=out)
            needs = "libpool.so" in out.getvalue()
            if needs != shared:
                raise ConanException(f"{name} {'does not need' if shared else 'needs'} libpool.so "
                                     f"with shared={shared}")
            self.output.info(f"{name}: {'needs libpool.so' if shared else 'libpool.a linked in'}, as shared={shared} asks")
