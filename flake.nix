# SPDX-License-Identifier: GPL-3.0-or-later
#
# Anchor OS flake. It describes what Nix can honestly build from this tree: the static
# binaries (as scripts/build-static.sh does) and a development shell with the tools the
# Makefile uses. It does NOT build the kernels, room images, initramfs or the signed UKI:
# those come from Debian's kernel source and tools through the shell scripts the Makefile
# runs (docs/BUILD.md), and signing needs private keys that must never enter a Nix store
# (docs/SIGNING.md). It has never been evaluated: no Nix store is reachable from our build
# machines, so the Makefile is the reference and this file may lag it. There is no
# flake.lock for the same reason.
{
  description = "Anchor OS: a Linux that never rots";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in {
      packages = forAll (pkgs: rec {
        # Same as scripts/build-static.sh: bay0, anchor-vmm, anchor-agent, anchor-update
        # (static glibc), plus anchorctl and anchor-uki (the UKI build helper).
        anchor-bins = pkgs.rustPlatform.buildRustPackage {
          pname = "anchor-os-bins";
          version = "0.1.0";
          src = ./.;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [
            "-p" "bay0" "-p" "anchor-vmm" "-p" "anchor-agent" "-p" "anchorctl" "-p" "anchor-update"
          ];
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
            OVMF systemd mtools dosfstools util-linux libfaketime
          ];
        };
      });
    };
}
