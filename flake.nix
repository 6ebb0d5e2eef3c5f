# SPDX-License-Identifier: GPL-3.0-or-later
#
# Anchor OS flake. It mirrors the Makefile build (see docs/BUILD.md) so that Nix users get
# the same binaries and a development shell with the same tools. It is NOT evaluated in CI:
# no Nix store is reachable from our build machines, so the Makefile is the reference and
# this file may lag it. There is no flake.lock yet for the same reason.
{
  description = "Anchor OS: a Linux that never rots";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in {
      packages = forAll (pkgs: rec {
        # Same as scripts/build-static.sh: bay0, anchor-vmm, anchor-agent, anchor-jail,
        # anchor-courier, anchorctl (static glibc).
        anchor-bins = pkgs.rustPlatform.buildRustPackage {
          pname = "anchor-os-bins";
          version = "0.1.0";
          src = ./.;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [ "-p" "bay0" "-p" "anchor-vmm" "-p" "anchor-agent" "-p" "anchor-jail" "-p" "anchor-courier" "-p" "anchorctl" ];
          RUSTFLAGS = "-C target-feature=+crt-static";
          nativeBuildInputs = [ pkgs.binutils ];
          doCheck = false; # the tests need /dev/kvm and root: run `make test`
        };
        default = anchor-bins;
      });

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [
            rustup cargo-nextest qemu swtpm tpm2-tools cryptsetup squashfsTools erofs-utils
            busybox bubblewrap sbsigntool bc bison flex elfutils openssl pkg-config jq
          ];
        };
      });
    };
}
