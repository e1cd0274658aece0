import Foundation

/// Lines for the operator on standard output, written at once (not buffered), so that a
/// supervisor or a test reading the pipe sees them when they happen.
enum Console {
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
