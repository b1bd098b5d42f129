// swift-tools-version:6.0
// libhla: Higher-order Linear Attention engine, shipped as the C-ABI shared library libhla.so.
import PackageDescription

let package = Package(
    name: "libhla",
    products: [
        .library(name: "hla", type: .dynamic, targets: ["HLA"]),
    ],
    targets: [
        // The C types of the ABI (config struct, status and option enums, handles).
        .target(name: "CHLA", path: "Sources/CHLA"),
        // The engine and its C entry points (its dense products are its own: Sources/HLA/Core/Gemm.swift).
        .target(name: "HLA", dependencies: ["CHLA"], path: "Sources/HLA",
                swiftSettings: [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]),
        .testTarget(name: "HLATests", dependencies: ["HLA"], path: "Tests/HLATests"),
    ]
)
