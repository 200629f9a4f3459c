//! The `arenabuf` command.

fn main() {
    let classes = arenabuf::SizeClasses::new(8192, 9).expect("default geometry");
    println!("index\tsize\tsmall");
    for i in 0..classes.num_classes() {
        println!("{i}\t{}\t{}", classes.size_of(i), classes.is_small(i));
    }
}
