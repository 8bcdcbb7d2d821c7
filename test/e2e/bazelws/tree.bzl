"""file_tree: a rule whose only output is a directory (a tree artifact)."""

def _file_tree_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    ctx.actions.run_shell(
        outputs = [out],
        command = "for i in $(seq 1 {n}); do echo \"file $i of {n}\" > {dir}/f$i.txt; done".format(
            n = ctx.attr.count,
            dir = out.path,
        ),
        mnemonic = "FileTree",
    )
    return [DefaultInfo(files = depset([out]))]

file_tree = rule(
    implementation = _file_tree_impl,
    attrs = {"count": attr.int(default = 3)},
)
